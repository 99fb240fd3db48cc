"""How a model reaches executors, decided on the driver and reported from the executors.

A model whose only routes are files on the driver's machine (``zoo add``, a path, a
``file://`` mirror, a ``sha256:`` only the driver's cache holds) cannot be fetched by an
executor on another node. With ``shipModel="auto"`` (the default) the driver then ships it
through Spark's file distribution, unless a probe finds that every executor's node cache
already holds it (an executor that receives a shipped model keeps it in its node cache, so
the next application ships nothing). ``"always"`` ships regardless, ``"never"`` never does.

On a ``local`` master the executors share the driver's machine and its settings, and nothing
is shipped unless asked for.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.log import get_logger

log = get_logger("delivery")

SHIP_MODES = ("auto", "always", "never")
_NETWORK_SCHEMES = {"http", "https", "hf"}
_SHIPPED: set[tuple[int, str]] = set()  # (session, sha256) already added: Spark refuses a second file of one name


def to_ship_mode(value: Any) -> str:
    """``shipModel``'s converter: ``auto``/``always``/``never``; booleans as saved by older versions."""
    if isinstance(value, bool):
        return "always" if value else "never"
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return "always" if text == "true" else "never"
    if text not in SHIP_MODES:
        raise TypeError(f"shipModel must be auto, always or never; got {value!r}")
    return text


def master_of(spark) -> str:
    try:
        return spark.conf.get("spark.master", "") or ""
    except Exception:  # a Connect session that hides it
        return ""


def is_local(master: str) -> bool:
    """``local``, ``local[N]`` and ``local-cluster[...]``: every executor is on the driver's machine."""
    return master.startswith("local")


def reachable_from_executors(spec, settings) -> bool:
    """Whether an executor on another node has a known route to the model's bytes: a network
    mirror or source. Files on the driver's machine may be on shared storage, but the driver
    cannot know, so they do not count (shipping them is only a redundant transfer)."""
    mirrors = [f"{m}/sha256/{spec.source_sha256}" for m in settings.mirrors]
    for url in [*mirrors, *spec.sources]:
        scheme = urlsplit(url).scheme.lower()
        if scheme in _NETWORK_SCHEMES or scheme in settings.fsspec_schemes:
            return True
    return False


def prepare(spark, spec, runnable, ship: str = "auto"):
    """The spec executors get: the driver's settings on a local master, else the forwarded
    ``ZOO_*`` settings, and the model shipped where :func:`reachable_from_executors` says no."""
    from zoo.cluster.forwarding import executor_env, forwarded_env
    from zoo.config import settings

    master = master_of(spark)
    if is_local(master):
        spec = dataclasses.replace(spec, settings=settings())
        return ship_model(spark, spec, runnable) if ship == "always" else spec
    spec = dataclasses.replace(spec, forwarded=forwarded_env())
    if ship == "never":
        return spec
    if ship == "auto":
        if reachable_from_executors(spec, settings(executor_env(spec.forwarded))):
            return spec
        holders = node_caches_hold(spark, spec.sha256, *(p.sha256 for p in spec.parts))
        if holders:
            log.info("not shipping %s: every executor's node cache holds it (%s)", spec.label, holders)
            return spec
        log.info("shipping %s to the executors: its only routes are on this machine (%s)", spec.label,
                 ", ".join(spec.sources) or "this machine's cache")
    return ship_model(spark, spec, runnable)


def ship_model(spark, spec, runnable: Path | bytes):
    """Send the model file to every executor through Spark (for executors with no route to a source),
    with the external data files beside it when it has them (``zoo.hub.bundles``)."""
    import tempfile

    shipped = dataclasses.replace(spec, shipped=True)
    key = (id(spark), spec.sha256)
    if key in _SHIPPED:  # Spark refuses a second file of the same name
        return shipped
    folder = Path(tempfile.mkdtemp(prefix="zoo-ship-"))
    files = [_named(runnable, spec.sha256, folder)]
    if isinstance(runnable, Path):
        files += [_named(runnable.parent / p.location, p.sha256, folder) for p in spec.parts
                  if (runnable.parent / p.location).is_file()]
    for f in files:
        try:
            spark.sparkContext.addFile(str(f))
        except Exception:  # Spark Connect has no SparkContext; artifacts play the same role
            spark.addArtifacts(str(f), file=True)
    _SHIPPED.add(key)
    return shipped


def _named(src: Path | bytes, sha256: str, folder: Path) -> Path:
    """``src`` under its sha256 as the file name (SparkFiles finds files by base name)."""
    if isinstance(src, bytes):
        (folder / sha256).write_bytes(src)
        return folder / sha256
    if src.name == sha256:
        return src
    try:
        os.link(src, folder / sha256)
    except OSError:
        import shutil

        shutil.copyfile(src, folder / sha256)
    return folder / sha256


def _seconds(text: str) -> float:
    """A Spark time setting (``30s``, ``500ms``, ``2min``, ``30``) in seconds."""
    match = re.fullmatch(r"\s*([\d.]+)\s*(ms|s|min|m|h)?\s*", text or "")
    if not match:
        return 30.0
    return float(match[1]) * {"ms": 1e-3, None: 1.0, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}[match[2]]


def registered_executors(sc, settle_s: float = 2.0) -> int:
    """The executors registered with this application, after giving a starting one time to get them.

    A standalone master starts jobs as soon as the driver is up (Spark's
    ``minRegisteredResourcesRatio`` is 0 there), so right after start-up the tracker may list no
    executor, or only the first: asking then would ship a model every node already holds. Wait
    until the expected count is there (``spark.executor.instances``, or ``spark.cores.max`` over
    ``spark.executor.cores``), else until the count has been non-zero and unchanged for
    ``settle_s``, never longer than Spark's own ``maxRegisteredResourcesWaitingTime``."""
    conf = sc.getConf()
    expected = int(conf.get("spark.executor.instances", "0") or 0)
    cores_max, per_executor = conf.get("spark.cores.max", None), conf.get("spark.executor.cores", None)
    if not expected and cores_max and per_executor:
        expected = int(cores_max) // max(1, int(per_executor))
    deadline = time.monotonic() + _seconds(conf.get("spark.scheduler.maxRegisteredResourcesWaitingTime", "30s"))
    count, since = -1, time.monotonic()
    while True:
        now = time.monotonic()
        seen = len(sc.statusTracker().getExecutorInfos()) - 1  # the driver is listed too
        if seen != count:
            count, since = seen, now
        if (expected and count >= expected) or (not expected and count > 0 and now - since >= settle_s) \
                or now >= deadline:
            return count
        time.sleep(0.2)


def node_caches_hold(spark, *shas: str) -> str | None:
    """Ask every executor whether its node cache holds every file of ``shas`` (one task per executor).

    Returns a summary when every executor answered yes, else None (some lack it, or the
    answers cannot be trusted to cover every executor: dynamic allocation, Spark Connect)."""
    try:
        sc = spark.sparkContext
    except Exception:  # Spark Connect
        return None
    if sc.getConf().get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        return None  # executors that start later would not have been asked
    known = _HELD.get((sc.applicationId, shas))
    if known is not None:  # asked already in this application: each job would pay a probe task per executor
        return known
    executors = registered_executors(sc)
    if executors <= 0:
        return None

    def ask(_):
        from zoo.hub.cache import model_cache

        cache = model_cache()
        home = cache.root
        try:
            held = all(cache.lookup(sha) is not None for sha in shas)
        except Exception:
            held = False
        yield (socket.gethostname(), os.getppid(), str(home), held)  # ppid: the executor's Python daemon

    try:
        answers = set(sc.parallelize(range(executors), executors).barrier().mapPartitions(ask).collect())
    except Exception as exc:  # e.g. fewer free slots than executors
        log.debug("node-cache probe failed: %s", exc)
        return None
    if len({(host, pid) for host, pid, _, _ in answers}) < executors or not all(h for *_, h in answers):
        return None
    held = ", ".join(sorted({f"{host}:{home}" for host, _, home, _ in answers}))
    _HELD[(sc.applicationId, shas)] = held
    return held


#: (application, model files) -> every executor's node cache held them when asked (a cache only
#: grows while an application runs, and a blob that went bad is fetched again on the executor)
_HELD: dict[tuple[str, tuple[str, ...]], str] = {}


# -- on the executor ----------------------------------------------------------------------------
def node_name(settings) -> str:
    return f"executor host {socket.gethostname()} (ZOO_HOME={settings.home})"


def record(spec, settings, how: str) -> None:
    """Tell the driver (through the watch's accumulator, when one is listening) where this node got a model."""
    if spec.events is not None:
        try:
            spec.events.add([(socket.gethostname(), str(settings.home), spec.label, how)])
        except Exception as exc:  # never fail a task over a report
            log.debug("could not report %s: %s", how, exc)


def executor_failure(exc, spec, settings):
    """``exc`` (a ZooError raised while getting a model on an executor) again, as one paragraph
    that names the node and the settings that decide its routes, and says what to change."""
    from zoo.cluster.forwarding import origin_of

    if getattr(exc, "attempts", None):
        what = (f"could not get model {spec.label} (sha256 {spec.source_sha256}): "
                + "; ".join(str(a) for a in exc.attempts) + ".")
    else:
        what = " ".join(line.strip().lstrip("- ") for line in str(exc).splitlines() if line.strip())
    message = (
        f"on {node_name(settings)}: {what} Executors get a model from their node cache, then ZOO_MIRRORS "
        f"({origin_of('ZOO_MIRRORS', spec.forwarded)}), then its sources. Fix: export ZOO_MIRRORS on the driver "
        "(it is forwarded to executors) or set it in the workers' environment or spark.executorEnv.ZOO_MIRRORS, "
        "or ship the model from the driver (shipModel='always', zoo featurize --ship-model)."
    )
    exc.args = (message, *exc.args[1:])
    return exc
