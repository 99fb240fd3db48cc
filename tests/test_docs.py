"""The README a newcomer reads and the documentation site: short, linked, built with warnings as
errors, and its quick start run as written (so neither can drift from the code)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import PHOTOS, REPO, SHARED, missing, zoo_cmd

FACES = SHARED / "data" / "faces"

README = REPO / "README.md"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_is_short_and_every_page_it_links_exists():
    text = README.read_text()
    assert len(text.encode()) <= 12 * 1024, f"README.md is {len(text.encode()):,} bytes; the reference belongs in docs/"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert {"docs/python-api.md", "docs/cli.md", "docs/cluster.md", "LICENSE"} <= set(links)
    assert [link for link in links if not link.startswith("http") and not (REPO / link).exists()] == []
    for words in ("PySpark 3.5 and 4.x", "--format array", "any letter case", "exits with code 13",
                  "path`, `modificationTime`, `length`, `features` and `error`"):
        assert words in text, words


def test_the_two_setup_commands_are_the_ones_ci_runs():
    text = README.read_text()
    ci = (REPO / ".ci" / "run").read_text()
    test_command = next(line for block in _blocks(text, "bash") for line in block.splitlines()
                        if "pytest" in line and not line.startswith("#"))
    assert test_command in ci


@pytest.mark.slow
def test_the_documentation_site_builds_with_warnings_as_errors(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                            "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300, cwd=REPO,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "WARNING" not in built.stderr, built.stderr[-3000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "def pipeline" in reference or "pipeline" in reference and "read_images" in reference
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert {page for page in pages if page not in nav} == set(), "every page is in the site's navigation"


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(spark, mnv2, tmp_path, monkeypatch):
    """The README's quick start, with the one model this offline suite serves (registered from
    ../shared as mnv2-local) in place of the catalogue's mobilenetv2, and the shared photos in place
    of photos/."""
    text = README.read_text()
    block = next(b for b in _blocks(text, "bash") if "zoo predict" in b)
    swap = {"mobilenetv2": mnv2, "photos/": f"{PHOTOS}/"}
    monkeypatch.chdir(tmp_path)
    # the catalogue's face detector itself, served from a mirror folder (the shared file is byte-identical),
    # on the shared group photos
    face = SHARED / "models" / "version-RFB-320.onnx"
    if not face.exists():
        missing(f"{face} is absent: the shared test material is not beside the checkout")
    mirror = tmp_path / "mirror" / "sha256"
    mirror.mkdir(parents=True)
    (mirror / hashlib.sha256(face.read_bytes()).hexdigest()).write_bytes(face.read_bytes())
    monkeypatch.setenv("ZOO_MIRRORS", mirror.parent.as_uri())
    for line in block.splitlines():
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        for old, new in ({**swap, "photos/": f"{FACES}/"} if " detect " in command else swap).items():
            command = command.replace(old, new)  # faces for the face detector: 8 photos, not 100
        args = shlex.split(command)
        assert args[0] == "zoo"
        if args[1] in ("featurize", "predict", "detect"):
            args += ["--master", "local[1]"]
        done = zoo_cmd(*args[1:], check=None)
        assert done.returncode == 0, (command, done.stderr[-3000:])
        if args[1] in ("predict", "featurize"):
            assert "starting Spark" in done.stderr  # said at once, before Spark's 10-40 s start
        if args[1] == "detect":  # the Ultra-Light file's weights listed as inputs: no warning per weight
            assert "appears in graph inputs" not in done.stderr and "[W:onnxruntime" not in done.stderr
        if args[1] == "predict":  # the top 3 of each photo, one line each; a file that is no image, one line
            others = [p for p in PHOTOS.iterdir() if p.suffix != ".JPEG"]
            lines = [line for line in done.stdout.splitlines()[1:] if line.strip()]
            assert len(lines) == 3 * len(list(PHOTOS.glob("*.JPEG"))) + len(others), done.stdout[-2000:]
    assert (tmp_path / "features.parquet" / "_SUCCESS").exists()
    assert len(list((tmp_path / "boxes").glob("*.jpg"))) == len(list(FACES.glob("*.jpg")))  # zoo detect --draw

    (code,) = [b for b in _blocks(text, "python") if "zoo.pipeline" in b]
    for old, new in swap.items():
        code = code.replace(f'"{old}"', repr(new))
    code = code.replace('glob="*.jpg"', 'glob="n01*.jpeg"')  # a few of the shared photos, by any case
    namespace: dict = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    assert namespace["features"].count() == len(list(PHOTOS.glob("n01*.JPEG"))) > 0
