"""The installed layout: zoo, zoo.stages, zoo.cli, registry data; never bare `stages` or `cli`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import zoo
from conftest import REPO


def test_wheel_layout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("sparkzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("sparkzoo-")}
    assert tops == {"zoo"}, tops
    for required in ("zoo/__init__.py", "zoo/version.py", "zoo/stages/__init__.py", "zoo/stages/workers/images.py",
                     "zoo/cli/main.py", "zoo/hub/registry.json", "zoo/hub/registry.schema.json", "zoo/py.typed",
                     "zoo/runtime/jvm/sparkzoo-functions.jar", "zoo/runtime/jvm/ZooFunctions.java",
                     "zoo/cli/log4j2-cli.properties", "zoo/cluster/__init__.py", "zoo/cluster/events.py",
                     "zoo/plugins/hookspecs.py", "zoo/testing/tiny.py", "zoo/reference_photos/china.jpg",
                     "zoo/reference_photos/flower.jpg", "zoo/reference_photos/ATTRIBUTION.txt"):
        assert required in names
    assert f"Version: {zoo.__version__}" in zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    registry = zipfile.ZipFile(wheel).read("zoo/hub/registry.json")
    assert registry == (REPO / "registry.json").read_bytes()
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "zoo = zoo.cli.main:main" in entry_points
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    _one_onnx_runtime_per_platform(metadata)


# Where onnxruntime-gpu wheels are published (checked against PyPI with `pip install --dry-run
# --no-deps --only-binary=:all: --platform P onnxruntime-gpu`: only manylinux x86_64 and
# win_amd64; the CPU package has wheels for all five).
PLATFORMS = {
    "linux x86_64": ({"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"}, "onnxruntime-gpu"),
    "linux aarch64": ({"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"}, "onnxruntime"),
    "macOS arm64": ({"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"}, "onnxruntime"),
    "macOS x86_64": ({"sys_platform": "darwin", "platform_machine": "x86_64", "platform_system": "Darwin"}, "onnxruntime"),
    "Windows x64": ({"sys_platform": "win32", "platform_machine": "AMD64", "platform_system": "Windows"}, "onnxruntime-gpu"),
}


def _one_onnx_runtime_per_platform(metadata: str) -> None:
    """The wheel's Requires-Dist pick exactly one ONNX Runtime per platform: the GPU build where it is
    published, the CPU build elsewhere (resolved with packaging, the library pip itself uses)."""
    from packaging.requirements import Requirement

    requirements = [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
                    if line.startswith("Requires-Dist:")]
    runtimes = [r for r in requirements if r.name in ("onnxruntime", "onnxruntime-gpu") and not
                (r.marker and "extra" in str(r.marker))]
    for label, (env, expected) in PLATFORMS.items():
        environment = {"python_version": "3.11", "python_full_version": "3.11.7", "implementation_name": "cpython",
                       "platform_python_implementation": "CPython", "os_name": "nt" if "win" in env["sys_platform"]
                       else "posix", "platform_release": "", "platform_version": "", "extra": "", **env}
        chosen = [r.name for r in runtimes if r.marker is None or r.marker.evaluate(environment)]
        assert chosen == [expected], (label, chosen)


def test_installed_packages_map_to_the_repo_folders(tmp_path):
    """Run outside the checkout (-I: no cwd, no PYTHONPATH) so only the installation is seen."""
    code = (
        "import importlib.util, json, zoo, zoo.cli, zoo.stages;"
        "print(json.dumps([zoo.stages.__file__, zoo.cli.__file__, importlib.util.find_spec('stages') is None,"
        " importlib.util.find_spec('cli') is None, len(zoo.models())]))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    stages_file, cli_file, no_stages, no_cli, n_models = json.loads(out.stdout)
    assert Path(stages_file).parts[-2:] in (("stages", "__init__.py"), ("zoo", "stages", "__init__.py")[1:])
    assert Path(cli_file).parent.name == "cli"
    assert no_stages and no_cli
    assert n_models >= 11, "the packaged registry.json loads"


@pytest.mark.slow
def test_the_wheel_installed_outside_the_checkout_runs_the_readme_main_job(tmp_path):
    """Build the wheel and sdist as a release would; install the wheel (not `-e .`) into a fresh venv
    outside the repository and run the README's main job with its `zoo` command. The venv takes the
    dependencies from this test environment's site-packages through a .pth file (said so: no
    download of pyspark and ONNX Runtime per test run); sparkzoo itself comes only from the wheel."""
    import site
    import sysconfig

    from conftest import MOBILENET, PHOTOS

    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(tmp_path / "dist"), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "Deprecat" not in built.stdout + built.stderr, "the build warns of deprecated metadata"
    (wheel,) = (tmp_path / "dist").glob("sparkzoo-*.whl")
    (sdist,) = (tmp_path / "dist").glob("sparkzoo-*.tar.gz")

    import tarfile

    root = sdist.name.removesuffix(".tar.gz")
    shipped = {n.removeprefix(root + "/") for n in tarfile.open(sdist).getnames()}
    helpers = {f"tests/{p.name}" for p in (REPO / "tests").glob("*.py")}
    assert {"LICENSE", "tests/conftest.py", "docs/plugins.md", "pyproject.toml"} | helpers <= shipped, \
        sorted(({"LICENSE", "tests/conftest.py"} | helpers) - shipped)
    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and any(n.endswith("licenses/LICENSE") for n in names)
    assert {f"zoo/docs/{p.name}" for p in (REPO / "docs").glob("*.md")} <= set(names)

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(fresh)], check=True, timeout=120)
    python = fresh / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "zz_test_dependencies.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    work = tmp_path / "user"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOO_", "PYTHON"))}
    env.update(ZOO_HOME=str(tmp_path / "zoo-home"), ZOO_PROGRESS="0")
    where = subprocess.run([str(python), "-c", "import zoo; print(zoo.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(purelib), where  # the wheel's zoo, not the checkout's
    zoo_cmd = str(fresh / "bin" / "zoo")
    subprocess.run([zoo_cmd, "add", str(MOBILENET), "--name", "mobilenetv2-int8-local", "--labels", "imagenet",
                    "--license", "Apache-2.0"], cwd=work, env=env, check=True, capture_output=True, timeout=120)
    job = subprocess.run([zoo_cmd, "featurize", str(PHOTOS), "--glob", "*.JPEG", "--model", "mobilenetv2-int8-local",
                          "--cut", "1", "--output", "features.parquet", "--overwrite", "--master", "local[2]"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-3000:]
    assert "100 files found" in job.stdout and "100 featurized, 0 failed" in job.stdout, job.stdout
    assert (work / "features.parquet" / "_SUCCESS").exists()
