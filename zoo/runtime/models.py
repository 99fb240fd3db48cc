"""The model a stage runs: prepared once on the driver, obtained on each executor.

The driver turns a model reference (a name, alias, ``sha256:`` or file path; see
:mod:`zoo.hub.refs`) plus a cut into a :class:`ModelSpec` (:func:`prepare`): a small picklable
record with every sha256 involved. Executors never consult a registry. They get the model
(:func:`obtain`), in this order, from:

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import CacheReadOnlyError, CutError, InvalidModelError, ZooError
from zoo.hub import bundles, layer_cuts, resolver
from zoo.hub.bundles import Part
from zoo.hub.cache import ModelCache, hash_file, model_cache
from zoo.hub.layer_cuts import Cut
from zoo.hub.download import Target, download
from zoo.hub.presets import preset as preset_recipe
from zoo.log import get_logger

if TYPE_CHECKING:
    from zoo.runtime.sessions import RuntimeOptions

log = get_logger("model")


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
    parts: tuple[Part, ...] = ()  # the source model's external data files (zoo.hub.bundles)
    locale: str | None = None  # runs a copy whose StringNormalizer nodes use this locale (zoo.hub.locale_copy)
    settings: Any = None  # the driver's Settings, used by executors of a local master (same machine)
    forwarded: tuple[tuple[str, str], ...] = ()  # the driver's ZOO_* settings for executors of other nodes
    events: Any = field(default=None, compare=False)  # a watch's accumulator: where each node got the model

    @property
    def weights_sha256(self) -> str | None:
        """One digest of the external data files (None for a single-file model)."""
        return bundles.digest(self.parts)

    @property
    def key(self) -> str:
        """What identifies the model that runs: its sha256, with its weight files' when it has them
        (the graph file of a multi-file model does not pin its weights: two checkpoints exported the
        same way share it)."""
        return self.sha256 if not self.parts else f"{self.sha256}+{self.weights_sha256}"


def prepare(model: str, cut: int | str = 0, *, preprocess: dict[str, Any] | None | str = "registry",
            locale: str | None = None) -> tuple[ModelSpec, Path | bytes]:
    """Resolve ``model`` on the driver: (spec, the local file or bytes of the model that runs).

    ``preprocess``: ``"registry"`` keeps the registry's recipe (none for files and bare sha256s), a
    preset name or dict replaces it. ``locale``: run a copy of a text model whose StringNormalizer
    nodes use this locale (:mod:`zoo.hub.locale_copy`); without it, a model asking for a locale this
    machine lacks is refused here, before Spark runs a task, with what to do."""
    located = resolver.locate(model)
    cache = model_cache()
    source_sha, source = _localised(cache, located.sha256, located.path, locale, repr(model), located.parts)
    chosen, run_sha, runnable = layer_cuts.cut_model(cache, source_sha, source, located.pinned_cuts, cut,
                                                     repr(model), located.parts)
    recipe = located.preprocess if preprocess == "registry" else preset_recipe(preprocess)
    spec = ModelSpec(model, located.sha256, located.bytes, tuple(located.sources), chosen if chosen.index else None,
                     run_sha, dict(located.input), chosen.output_name, recipe, chosen.feature_length,
                     parts=located.parts, locale=locale or None)
    return spec, runnable


def _localised(cache: ModelCache, sha: str, path: Path, locale: str | None, label: str,
               parts: tuple[Part, ...]) -> tuple[str, Path]:
    """(sha256, file) of the model to cut and run: ``path`` itself, or its copy in ``locale``; a model
    whose StringNormalizer asks for a locale this machine lacks is refused (InvalidModelError)."""
    from zoo.hub import locale_copy, onnx_files

    if not locale:
        if onnx_files.mentions(path, b"StringNormalizer"):
            import onnx

            problem = onnx_files.locale_problem(onnx.load(str(path), load_external_data=False), label)
            if problem:
                raise InvalidModelError(problem)
        return sha, path
    if parts:
        raise InvalidModelError(f"model {label} keeps its weights in external files; stringLocale is for text models "
                                "saved as one file")
    copied_sha, copied = locale_copy.copy(cache, sha, path, locale, label)
    if isinstance(copied, bytes):
        raise CacheReadOnlyError(f"model {label}: the copy with stringLocale={locale!r} needs a writable cache; "
                                 f"point ZOO_HOME at a writable directory")
    return copied_sha, copied


def session_for(spec: ModelSpec, options: "RuntimeOptions", *, on_executor: bool = False):
    """This worker's ONNX Runtime session for ``spec`` (loaded once per worker; see
    :func:`zoo.runtime.sessions.session`). ``on_executor``: load the node's cached optimised file."""
    from zoo.runtime import sessions

    # the optimised-file cache holds single files: a multi-file model is optimised in the worker
    cache = model_cache(executor_settings(spec)) if on_executor and not spec.parts else None
    return sessions.session(spec.key, lambda: obtain(spec), options, cache)


def executor_settings(spec: ModelSpec) -> Settings:
    """The settings an executor uses for ``spec``: the driver's on a local master, else this
    node's environment with the driver's forwarded settings filling its gaps."""
    from zoo.cluster.forwarding import executor_env

    return spec.settings or current_settings(executor_env(spec.forwarded))


def obtain(spec: ModelSpec) -> Path | bytes:
    """On an executor: the file (or bytes) of the model ``spec`` runs, by the order in the module doc."""
    from zoo.cluster import delivery

    s = executor_settings(spec)
    try:
        found, how = _obtain(spec, s)
    except ZooError as exc:
        if spec.settings is not None:  # a local master: the driver's own machine and settings
            raise
        raise delivery.executor_failure(exc, spec, s) from None
    delivery.record(spec, s, how)
    return found


def _shipped_copy(sha256: str, cache: ModelCache) -> Path | None:
    """The driver's shipped file ``sha256``, verified and kept in the node cache (when it is writable)."""
    try:
        from pyspark import SparkFiles

        shipped = Path(SparkFiles.get(sha256))
        if not (shipped.is_file() and hash_file(shipped) == sha256):
            return None
    except Exception as exc:
        log.debug("shipped model %s not usable: %s", sha256[:12], exc)
        return None
    try:
        return cache.import_file(shipped, sha256)
    except ZooError as exc:  # a read-only or full node cache: run from Spark's copy
        log.info("shipped model %s not kept in the node cache: %s", sha256[:12], exc)
        return shipped


def _part_getter(spec: ModelSpec, s: Settings, cache: ModelCache):
    """Bring one external data file into the node cache: the driver's shipped copy, else a download."""

    def get(part: Part) -> None:
        if spec.shipped and _shipped_copy(part.sha256, cache) is not None:
            return
        bundles.fetch_parts(cache, [part], repr(spec.label), s)

    return get


def _obtain(spec: ModelSpec, s: Settings) -> tuple[Path | bytes, str]:
    found, how = _graph(spec, s)
    if spec.parts:
        cache = model_cache(s)
        found = bundles.runnable(cache, spec.sha256, found, spec.parts, repr(spec.label), _part_getter(spec, s, cache))
    return found, how


def _graph(spec: ModelSpec, s: Settings) -> tuple[Path | bytes, str]:
    """The graph file of the model ``spec`` runs (without its external data files)."""
    cache = model_cache(s)
    hit = cache.lookup(spec.sha256)
    if hit is not None:
        return hit, "node cache"
    if spec.shipped:
        shipped = _shipped_copy(spec.sha256, cache)
        if shipped is not None:
            return shipped, "shipped by the driver"
    how = "node cache"
    source = cache.lookup(spec.source_sha256, spec.source_bytes)
    if source is None:
        used: list[str] = []
        target = Target(spec.source_sha256, spec.source_bytes, spec.sources, repr(spec.label),
                        frozenset(p.location for p in spec.parts))
        source = download(target, cache, s, on_source=used.append)
        how = f"downloaded from {used[0]}" if used else "downloaded by another process on this node"
    if spec.locale:  # the copy with the locale rewritten, made here as the driver made it
        from zoo.hub import locale_copy

        copied_sha, source = locale_copy.copy(cache, spec.source_sha256, source, spec.locale, repr(spec.label))
        if spec.cut is None and copied_sha != spec.sha256:
            raise CutError(f"model {spec.label!r} with stringLocale={spec.locale!r} made on this executor has sha256 "
                           f"{copied_sha}, but the driver's has {spec.sha256}: install the same onnx version on both, "
                           "or ship the model from the driver (shipModel='always')")
        how += f", locale {spec.locale} set here"
    else:
        copied_sha = spec.source_sha256
    if spec.cut is None:
        return source, how
    if spec.parts:  # the cut is checked against its weights: build it beside them
        source = bundles.runnable(cache, spec.source_sha256, source, spec.parts, repr(spec.label),
                                  _part_getter(spec, s, cache))
    sha, runnable = layer_cuts.cut_blob(cache, copied_sha, source, spec.cut)
    if sha != spec.sha256:
        raise CutError(
            f"model {spec.label!r} cut {spec.cut.index} built on this executor has sha256 {sha}, but the driver's has "
            f"{spec.sha256}: the onnx versions differ between driver and executors; install the same versions, "
            "or ship the model from the driver (shipModel='always')"
        )
    return runnable, f"{how}, cut {spec.cut.index} built here"
