"""The installed layout: zoo, zoo.stages, zoo.cli, registry data; never bare `stages` or `cli`."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

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
