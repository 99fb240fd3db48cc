"""Resolving a model once on the driver, and getting its bytes on an executor.

The driver turns a name, alias, ``sha256:``, or file path (plus a cut) into a :class:`ModelSpec`:
a small picklable record with every sha256 involved. Executors never consult a registry. They
get the model, in this order, from:

1. the node's zoo cache (``ZOO_HOME``), by the sha256 of the model they run (the cut model);
2. the file the driver shipped through Spark (``SparkContext.addFile`` / ``addArtifacts``; see
   :mod:`zoo.cluster.delivery` for when), verified by sha256 and kept in the node cache so the
   next application finds it there;
3. the source model from the cache, ``ZOO_MIRRORS`` or its sources (one download per node, under
   the cache's lock), then the same cut built locally and checked against the driver's sha256.

Executors read their own ``ZOO_*`` environment with the driver's forwarded settings filling the
gaps (:mod:`zoo.cluster.forwarding`); a failure names the node and what to change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo._cuts import Cut
from zoo._logging import get_logger
from zoo.errors import CutError, ModelNotFoundError

log = get_logger("model")
_SHIPPED: set[tuple[int, str]] = set()


@dataclass(frozen=True)
class ModelSpec:
    """What executors need to run one (possibly cut) model."""

    label: str  # for messages: the name the user gave
    source_sha256: str
    source_bytes: int | None
    sources: tuple[str, ...]
    cut: Cut | None
    sha256: str  # of the model that runs (== source_sha256 when uncut)
    input: dict[str, Any]
    output: str  # the output tensor name of the model that runs
    preprocess: dict[str, Any] | None
    features: int  # values per row of the output
    shipped: bool = False
    settings: Any = None  # the driver's Settings, used by executors of a local master (same machine)
    forwarded: tuple[tuple[str, str], ...] = ()  # the driver's ZOO_* settings for executors of other nodes
    events: Any = field(default=None, compare=False)  # a watch's accumulator: where each node got the model


def _file_ref(path: Path):
    from zoo.cache import hash_file

    return hash_file(path), path.stat().st_size


def resolve(model: str, cut: int | str = 0, *, preprocess: dict[str, Any] | None | str = "registry") -> tuple[ModelSpec, Path | bytes]:
    """Resolve ``model`` on the driver: (spec, the local file or bytes of the model that runs)."""
    from zoo import _api, _cuts, registry
    from zoo._onnx_checks import check_external_data, describe_model
    from zoo.cache import Cache
    from zoo.config import settings

    s = settings()
    cache = Cache(s.home)
    candidate = Path(model).expanduser()
    entry = None
    if model.endswith(".onnx") or (os.sep in model and candidate.exists()):
        if not candidate.is_file():
            raise ModelNotFoundError(f"no such model file {candidate}")
        path = candidate.resolve()
        check_external_data(path)
        sha, size = _file_ref(path)
        sources: tuple[str, ...] = (path.as_uri(),)
        described = describe_model(path)
        inp, pre, pinned = described["input"], None, None
    else:
        entry = registry.load(s).get(model)
        path = _api.pull(model)
        if entry is not None:
            sha, size, sources = entry.sha256, entry.bytes, entry.sources
            inp, pre, pinned = entry.input, entry.preprocess, entry.cuts
        else:  # a bare sha256 known to the cache or the mirrors
            sha, size, sources = path.name, path.stat().st_size, ()
            inp, pre, pinned = describe_model(path)["input"], None, None
    cuts = _cuts.cached_analysis(cache, sha, path, pinned)
    chosen = _cuts.select(cuts, cut, repr(model))
    run_sha, runnable = _cuts.cut_blob(cache, sha, path, chosen)
    out_name = chosen.tensor if not chosen.quantized else _cuts._FLOAT_OUT.format(chosen.tensor)
    if preprocess != "registry":
        from zoo._presets import preset

        pre = preset(preprocess)
    spec = ModelSpec(model, sha, size, tuple(sources), chosen if chosen.index else None, run_sha, dict(inp), out_name, pre, chosen.feature_length)
    return spec, runnable


def ship(spark, spec: ModelSpec, runnable: Path | bytes) -> ModelSpec:
    """Send the model file to every executor through Spark (for executors with no route to a source)."""
    import dataclasses
    import tempfile

    shipped = dataclasses.replace(spec, shipped=True)
    key = (id(spark), spec.sha256)
    if key in _SHIPPED:  # Spark refuses a second file of the same name
        return shipped
    if isinstance(runnable, bytes):
        tmp = Path(tempfile.mkdtemp(prefix="zoo-ship-")) / spec.sha256
        tmp.write_bytes(runnable)
        runnable = tmp
    if runnable.name != spec.sha256:  # SparkFiles finds files by base name
        import shutil

        tmp = Path(tempfile.mkdtemp(prefix="zoo-ship-")) / spec.sha256
        shutil.copyfile(runnable, tmp)
        runnable = tmp
    try:
        spark.sparkContext.addFile(str(runnable))
    except Exception:  # Spark Connect has no SparkContext; artifacts play the same role
        spark.addArtifacts(str(runnable), file=True)
    _SHIPPED.add(key)
    return shipped


def _verified(path: Path, sha256: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == sha256


def executor_settings(spec: ModelSpec):
    """The settings an executor uses for ``spec``: the driver's on a local master, else this
    node's environment with the driver's forwarded settings filling its gaps."""
    from zoo.cluster.forwarding import executor_env
    from zoo.config import settings

    return spec.settings or settings(executor_env(spec.forwarded))


def fetch(spec: ModelSpec) -> Path | bytes:
    """On an executor: the file (or bytes) of the model ``spec`` runs, by the order in the module doc."""
    from zoo.cluster import delivery
    from zoo.errors import ZooError

    s = executor_settings(spec)
    try:
        found, how = _fetch(spec, s)
    except ZooError as exc:
        if spec.settings is not None:  # a local master: the driver's own machine and settings
            raise
        raise delivery.executor_failure(exc, spec, s) from None
    delivery.record(spec, s, how)
    return found


def _shipped_copy(spec: ModelSpec, cache) -> Path | None:
    """The driver's shipped file, verified and kept in the node cache (when it is writable)."""
    from zoo.errors import ZooError

    try:
        from pyspark import SparkFiles

        shipped = Path(SparkFiles.get(spec.sha256))
        if not (shipped.is_file() and _verified(shipped, spec.sha256)):
            return None
    except Exception as exc:
        log.debug("shipped model %s not usable: %s", spec.sha256[:12], exc)
        return None
    try:
        return cache.import_file(shipped, spec.sha256)
    except ZooError as exc:  # a read-only or full node cache: run from Spark's copy
        log.info("shipped model %s not kept in the node cache: %s", spec.sha256[:12], exc)
        return shipped


def _fetch(spec: ModelSpec, s) -> tuple[Path | bytes, str]:
    from zoo import _cuts, _download
    from zoo.cache import Cache

    cache = Cache(s.home)
    hit = cache.lookup(spec.sha256)
    if hit is not None:
        return hit, "node cache"
    if spec.shipped:
        shipped = _shipped_copy(spec, cache)
        if shipped is not None:
            return shipped, "shipped by the driver"
    how = "node cache"
    source = cache.lookup(spec.source_sha256, spec.source_bytes)
    if source is None:
        used: list[str] = []
        target = _download.Target(spec.source_sha256, spec.source_bytes, spec.sources, repr(spec.label))
        source = _download.fetch(target, cache, s, on_source=used.append)
        how = f"downloaded from {used[0]}" if used else "downloaded by another process on this node"
    if spec.cut is None:
        return source, how
    sha, runnable = _cuts.cut_blob(cache, spec.source_sha256, source, spec.cut)
    if sha != spec.sha256:
        raise CutError(
            f"model {spec.label!r} cut {spec.cut.index} built on this executor has sha256 {sha}, but the driver's has "
            f"{spec.sha256}: the onnx versions differ between driver and executors; install the same versions, "
            "or ship the model from the driver (shipModel='always')"
        )
    return runnable, f"{how}, cut {spec.cut.index} built here"
