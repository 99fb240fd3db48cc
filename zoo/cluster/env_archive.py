"""A relocatable environment archive for executors (``zoo cluster-env``).

Spark unpacks ``--archives env.tar.gz#env`` in each executor's working folder and runs
``./env/bin/python``. Packing the development environment does not work: an editable install
(``pip install -e .``) packs a finder that points at a checkout no other node has, and it
carries pyspark (the cluster's Spark provides its own ``pyspark.zip`` on executors) and the
tests' extras. So the archive is built fresh:

1. a new virtual environment from this machine's base interpreter (nodes need the same
   interpreter at the same path, as with venv-pack; ``--python`` picks another), filled by this
   interpreter's pip (``pip --python``; a pip of its own only where this one is older than 22.3);
2. sparkzoo as a regular install: a wheel built from the checkout when sparkzoo runs from one,
   else ``sparkzoo==<this version>`` from the package index (or ``--find-links``);
3. every dependency sparkzoo's executors import, pinned to the version installed here (a layer
   cut is rebuilt on executors and must hash like the driver's, which needs the same onnx),
   with pyarrow (which pyspark's ``sql`` extra brought), without pyspark itself and pandas
   (only the driver's SparkML uses it; ``with_packages`` adds it or anything else back);
   ``--cpu`` takes the CPU-only ``onnxruntime`` instead of ``onnxruntime-gpu`` (a fifth of the size);
4. an import check with the Spark's ``pyspark.zip`` on the path, as on an executor;
5. a ``.tar.gz`` without pip, setuptools and the activation scripts.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from zoo.log import get_logger
from zoo.errors import ConfigError

log = get_logger("cluster-env")

#: Distributions the driver needs but sparkzoo's executors never import (tests/test_worker_imports.py
#: proves it for pandas; ``--with pandas`` adds it back for your own pandas UDFs).
LEFT_OUT = ("pyspark", "py4j", "pandas")
#: Imported on executors although only pyspark's extras bring them.
ALSO_NEEDED = ("pyarrow", "numpy")
_SKIPPED = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth")


@dataclass
class EnvArchive:
    """What :func:`build` made."""

    path: Path
    packed_bytes: int
    unpacked_bytes: int
    python: str
    packages: list[str] = field(default_factory=list)
    left_out: tuple[str, ...] = LEFT_OUT

    def to_dict(self) -> dict:
        return {"path": str(self.path), "packed_bytes": self.packed_bytes, "unpacked_bytes": self.unpacked_bytes,
                "python": self.python, "packages": self.packages, "left_out": list(self.left_out)}


def _checkout() -> Path | None:
    """The source checkout sparkzoo is imported from (editable install or PYTHONPATH), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "stages").is_dir() else None


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def requirements(cpu: bool = False, extras: tuple[str, ...] = (), with_packages: tuple[str, ...] = ()) -> list[str]:
    """sparkzoo's executor dependencies for this platform, pinned to the versions installed here
    (``with_packages``: more distributions, pinned too when installed here)."""
    from packaging.requirements import Requirement

    wanted: list[str] = []
    for text in metadata.requires("sparkzoo") or []:
        req = Requirement(text)
        in_extra = any(req.marker.evaluate({"extra": e}) for e in extras) if (req.marker and extras) else False
        if req.marker is not None and not (req.marker.evaluate({"extra": ""}) or in_extra):
            continue
        wanted.append(req.name)
    wanted += list(ALSO_NEEDED)
    added = {_name(p) for p in with_packages}
    pinned, seen = [], set()
    for name in [*wanted, *with_packages]:
        key = _name(name)
        if (key in LEFT_OUT and key not in added) or key in seen:
            continue
        seen.add(key)
        if key in added and not re.fullmatch(r"[A-Za-z0-9._-]+", name):  # a full requirement: as given
            pinned.append(name)
            continue
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            if key in added:
                pinned.append(name)
                continue
            raise ConfigError(f"{name} (a dependency of sparkzoo) is not installed here; install sparkzoo fully "
                              "first, then build the archive") from None
        if key == "onnxruntime-gpu" and cpu:
            name = "onnxruntime"
        pinned.append(f"{name}=={version}")
    return pinned


def _run(cmd: list[str], what: str, env: dict | None = None, cwd: str | None = None) -> str:
    log.info("%s: %s", what, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ConfigError(f"zoo cluster-env: {what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _du(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def _keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(member.name).parts
    if len(parts) >= 2 and parts[0] == "bin" and parts[1].startswith(("activate", "Activate", "pip")):
        return None
    if "site-packages" in parts:
        below = parts[parts.index("site-packages") + 1:]
        if below and (below[0] in _SKIPPED or below[0].startswith(("pip-", "setuptools-"))):
            return None
    return member


def build(output: str | os.PathLike, *, cpu: bool = False, python: str | None = None, extras: tuple[str, ...] = (),
          with_packages: tuple[str, ...] = (), pip_args: tuple[str, ...] = ()) -> EnvArchive:
    """Build the archive described in the module doc at ``output`` (a ``.tar.gz``)."""
    out = Path(output).expanduser().absolute()
    if not out.name.endswith((".tar.gz", ".tgz")):
        raise ConfigError(f"{out}: the archive name must end with .tar.gz (Spark unpacks it by its name)")
    python = python or getattr(sys, "_base_executable", None) or sys.executable
    pinned = requirements(cpu, extras, with_packages)
    with tempfile.TemporaryDirectory(prefix="zoo-cluster-env-") as tmp:
        env, wheels = Path(tmp) / "env", Path(tmp) / "wheels"
        env_python = str(env / "bin" / "python")
        # this interpreter's pip installs into the new environment (`pip --python`, pip >= 22.3): no
        # pip of its own to install first (4.5 of the 40 s here), and the archive leaves pip out anyway
        outer = _pip_can_target()
        _run([python, "-m", "venv", *(["--without-pip"] if outer else []), str(env)], "creating the environment")
        pip = [sys.executable, "-m", "pip", "--python", env_python] if outer else [env_python, "-m", "pip"]
        checkout = _checkout()
        if checkout is not None:
            # with setuptools here, build without an isolated environment: works offline and is faster
            isolation = ["--no-build-isolation"] if _has("setuptools") and _has("wheel") else []
            _run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", *isolation, *pip_args,
                  "-w", str(wheels), str(checkout)], "building sparkzoo's wheel")
            sparkzoo = [str(next(wheels.glob("sparkzoo-*.whl")))]
        else:
            from zoo.version import __version__

            sparkzoo = [f"sparkzoo=={__version__}"]
        _run([*pip, "install", "--disable-pip-version-check", "--no-deps", *pip_args, *sparkzoo], "installing sparkzoo")
        _run([*pip, "install", "--disable-pip-version-check", *pip_args, *pinned], "installing its dependencies")
        _check_imports(env_python, tmp)
        unpacked = _du(env)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        # level 1: packing 610 MB took 36 s at level 6 and 12 s at 1, for 220 MB instead of 197 MB;
        # the archive crosses the cluster's network once per application, the packing is the user's wait
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            for item in sorted(env.iterdir()):
                tar.add(str(item), arcname=item.name, filter=_keep)
        os.replace(partial, out)
    base = os.path.realpath(python)
    left_out = tuple(n for n in LEFT_OUT if n not in {_name(p) for p in with_packages})
    return EnvArchive(out, out.stat().st_size, unpacked, base, ["sparkzoo", *pinned], left_out)


def _pip_can_target() -> bool:
    """Whether this interpreter's pip installs into another environment (``--python``: pip >= 22.3)."""
    from packaging.version import Version  # imported where used, as requirements() does

    try:
        return Version(metadata.version("pip")) >= Version("22.3")
    except metadata.PackageNotFoundError:
        return False


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _check_imports(env_python: str, cwd: str) -> None:
    """Import what an executor imports, with the Spark's own pyspark.zip and py4j on the path."""
    import pyspark

    lib = Path(pyspark.__file__).parent / "python" / "lib"
    path = os.pathsep.join(str(p) for p in sorted(lib.glob("*.zip")))
    code = "import pyspark.worker, zoo, zoo.stages.workers.images, zoo.stages.workers.tensors, onnxruntime, cv2, onnx, pyarrow, numpy"
    _run([env_python, "-c", code], "checking the environment imports what executors need",
         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": path}, cwd=cwd)  # not a checkout's cwd
