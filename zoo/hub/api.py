"""The hub's public functions (docs/python-api.md): pull, models, info, cuts, cut, add, verify,
remove and the cache commands. ``zoo.pull`` and friends are these functions."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import ChecksumError, RegistryError, ZooError
from zoo.hub import bundles, derived
from zoo.hub import labels as labels_module
from zoo.hub import layer_cuts
from zoo.hub import registry, resolver
from zoo.hub.cache import ModelCache, PruneReport, hash_file, model_cache
from zoo.hub.download import progress_bar
from zoo.hub.fsutil import atomic_write_bytes
from zoo.hub.presets import detector as detector_preset
from zoo.hub.presets import preset
from zoo.hub.registry import ModelEntry, Registry


TASKS = tuple(registry.schema()["$defs"]["model"]["properties"]["task"]["enum"])


def _settings(progress: bool | None = None) -> Settings:
    s = current_settings()
    return dataclasses.replace(s, progress=progress) if progress is not None else s


def pull(name_or_sha: str, *, progress: bool | None = None) -> Path:
    """Return the local path of a verified model, downloading it if it is not cached.

    ``name_or_sha`` is a registry name, an alias (``resnet50``), or a sha256 (``sha256:<hex>`` or
    bare hex). The files its entry pins beside it (``files``, a label file) are fetched too. A cache
    hit costs a ``stat`` and no hashing. Raises :class:`~zoo.errors.ZooError`
    subclasses: ``ModelNotFoundError``, ``OfflineError``, ``DownloadError``/``ChecksumError``,
    ``InsufficientSpaceError``, ``CacheReadOnlyError``.
    """
    from zoo.hub import sidecars

    settings = _settings(progress)
    path, entry = resolver.fetch_blob(name_or_sha, settings)
    if entry is not None:  # the files that travel with it (a tokenizer, a label file)
        sidecars.fetch_all(entry, settings)
    return path


def models(*, cached: bool = False, task: str | None = None, search: str | None = None, license: str | None = None,
           max_bytes: int | None = None) -> list[ModelEntry]:
    """The models the merged registries know, sorted by name: only cached ones with ``cached``, of a
    ``task`` (``image-classification``, ``object-detection``, ...; see :data:`TASKS`), whose name,
    aliases, description, task or licence hold every word of ``search`` (any case), under a
    ``license`` (any case), of at most ``max_bytes``."""
    from zoo.errors import ConfigError

    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    s = current_settings()
    entries = list(registry.load(s))
    if cached:
        present = set(model_cache(s).shas())
        entries = [e for e in entries if e.sha256 in present]
    words = (search or "").lower().split()

    def keep(e: ModelEntry) -> bool:
        text = " ".join([e.name, *e.aliases, e.description, e.task, e.license]).lower()
        return ((task is None or e.task == task) and all(w in text for w in words)
                and (license is None or e.license.lower() == license.lower())
                and (max_bytes is None or e.total_bytes <= max_bytes))

    return [e for e in entries if keep(e)]


def info(name: str) -> dict[str, Any]:
    """A model's registry entry plus where it came from, whether (and where) it is cached, and its
    layer cuts when it is cached."""
    s = current_settings()
    reg = registry.load(s)
    entry = reg.resolve(name)
    cache = model_cache(s)
    path = cache.blob_path(entry.sha256)
    parts = bundles.parts_of(entry.external_data, entry.name)
    runs = cache.bundle_path(bundles.bundle_id(entry.sha256, parts)) / bundles.MODEL_FILE if parts else path
    out = entry.to_dict()
    out["total_bytes"] = entry.total_bytes
    out["aliases"] = reg.aliases_of(entry.name)
    out["origin"] = entry.origin
    out["cached"] = path.exists()
    out["path"] = str(path) if path.exists() else None
    out["label_set"] = labels_module.describe(entry, cache)
    if runs.exists():  # a multi-file model's cuts are measured with its weights beside it
        out["available_cuts"] = [c.to_dict() for c in layer_cuts.cached_analysis(cache, entry.sha256, runs, entry.cuts)]
    return out


def cuts(name: str) -> list[layer_cuts.Cut]:
    """Every layer cut of a model (a name, alias, sha256 or .onnx path; pulled if needed): index,
    tensor, op, shape, dtype, feature length."""
    located = resolver.locate(name)
    return layer_cuts.cached_analysis(model_cache(), located.sha256, located.path, located.pinned_cuts)


def cut(name: str, cut: int | str = 1) -> Path:
    """The ONNX file of ``name`` cut ``cut`` layers from its head (or at a tensor name), cached by content."""
    import tempfile

    located = resolver.locate(name)
    _, sha, runnable = layer_cuts.cut_model(model_cache(), located.sha256, located.path, located.pinned_cuts, cut,
                                              repr(name), located.parts)
    if isinstance(runnable, bytes):  # read-only cache: hand out a private copy
        out = Path(tempfile.mkdtemp(prefix="zoo-cut-")) / f"{sha}.onnx"
        out.write_bytes(runnable)
        return out
    return runnable


def add(
    path: str | os.PathLike[str],
    *,
    name: str,
    preprocess: str | dict[str, Any] | None = None,
    description: str | None = None,
    license: str | None = None,
    task: str | None = None,
    labels: str | None = None,
    aliases: Iterable[str] = (),
    replace: bool = False,
    detector: str | None = None,
) -> ModelEntry:
    """Register a model under ``name`` in the user registry and import it into the cache.

    ``path`` is a local ONNX file, ``hf://ORG/REPO/FILE.onnx[@REV]`` or an ``https://`` URL: a URL is
    downloaded once and pinned (by sha256, and an ``hf://`` source at the commit its revision points
    to now), and what the Hub publishes beside it (a timm-style ``config.json``: preprocessing, class
    names, licence; the model card's licence) fills what the arguments leave out. The input name,
    shape, dtype and layout are read from the model. ``preprocess`` is a preset name (``imagenet``,
    ``efficientnet-lite``, ``none``) or a full dict; left out, a local file gets ``imagenet`` and a
    URL what its source publishes (an error if it publishes none). ``labels`` is a shipped label set
    or a label file. ``detector`` (``yolox``, ``ultraface``, ...; :func:`zoo.hub.presets.detector`) registers
    an object detector: its authors' preprocessing for the model's input size, its decoding recipe and label
    set (each unless given), task ``object-detection``. On any error nothing is written.

    A name already in the user registry: the same file again updates the fields given and keeps the
    others (licence, labels, description, aliases, preprocessing, task); another file is refused
    unless ``replace``, which also keeps the fields not given (a user who re-adds a new version
    under its name keeps its licence and labels)."""
    from zoo.hub import published as publishing
    from zoo.hub.onnx_files import describe_model, external_locations, model_file

    s = current_settings()
    registry.check_name(name)
    for alias in aliases:
        registry.check_name(alias, "alias")
    cache = model_cache(s)
    previous = _user_entry(cache, name)
    task = task or (previous.task if previous is not None else None) or \
        ("object-detection" if detector else "image-classification")
    try:
        remote = publishing.fetch(str(path), cache, s) if publishing.is_url(str(path)) else None
    except ZooError as exc:  # name the model being added, keep the class (and its exit code)
        raise type(exc)(f"cannot add model {name!r}: {exc}") from None
    try:
        if remote is not None:
            src, source = remote.path, remote.source
            if preprocess is None and remote.preprocess is None and task in ("image-classification", "feature-extraction"):
                found = f" (read: {', '.join(remote.found)})" if remote.found else ""
                raise RegistryError(f"model {name!r}: {path} publishes no preprocessing (no config.json with a timm "
                                    f"pretrained_cfg){found}; give preprocess (--preprocess imagenet, efficientnet-lite, "
                                    "none or a JSON recipe)")
            recipe = preset(preprocess) if preprocess is not None else remote.preprocess
        else:
            src = model_file(Path(path).expanduser())
            source, recipe = src.as_uri(), preset("imagenet" if preprocess is None else preprocess)
        label_spec = _label_spec(labels, name) if labels else (remote.labels if remote is not None else None)
        described = describe_model(src)
        detection = None
        if detector:
            shape = described["input"]["shape"]
            size = shape[1:3] if described["input"]["layout"] == "NHWC" else shape[2:4]
            if not all(isinstance(d, int) for d in size):
                raise RegistryError(f"model {name!r}: its input {described['input']['name']!r} has no fixed size "
                                    f"({shape}); give --preprocess with the size its authors use")
            pixels, detection, family_labels = detector_preset(detector, tuple(size))
            recipe = recipe if preprocess is not None else pixels
            if label_spec is None and family_labels:
                label_spec = family_labels
        parts = bundles.file_parts(src, external_locations(src)) if remote is None else ()
        sha = hash_file(src)
        if previous is not None and previous.sha256 != sha and not replace:
            raise RegistryError(f"model {name!r} is already registered with another file (sha256 "
                                f"{previous.sha256[:12]}..., from {previous.sources[0] if previous.sources else '?'}); "
                                "pass --replace (replace=True) to register this file under that name, or choose "
                                "another name")
        if previous is not None:  # what the user did not give again is kept, never reset to a default
            given_preprocess = preprocess is not None or (remote is not None and remote.preprocess is not None)
            recipe = recipe if given_preprocess else previous.preprocess
            aliases = list(aliases) or list(previous.aliases)
            description = description or previous.description
            license = license or (remote.license if remote is not None else None) or previous.license
            if label_spec is None:
                label_spec = previous.labels
        data: dict[str, Any] = {
            "name": name,
            "aliases": list(aliases),
            "description": description or f"{Path(str(path)).name}, added with `zoo add`",
            "license": license or (remote.license if remote is not None else None) or "unknown",
            "task": task,
            "format": "onnx",
            "sha256": sha,
            "bytes": src.stat().st_size,
            "sources": [source],
            "preprocess": recipe,
            "labels": label_spec,
            **described,
        }
        if detection is not None:
            data["detection"] = detection
        elif previous is not None and previous.detection is not None:
            data["detection"] = previous.detection
        if parts:  # weights in files beside it: each pinned, and cached with it
            data["external_data"] = {p.location: p.as_file() for p in parts}
        if not data["aliases"]:
            del data["aliases"]
        user = cache.user_registry_path
        entry = registry.parse_document({"schema_version": 1, "models": [data]}, str(user))[0]
        if label_spec is not None:  # the label file must be readable, and fit the model, before the entry names it
            _check_classes(entry, labels_module.for_entry(entry, s), described.get("output"))
        cache.ensure_writable()
        if cache.lookup(sha, entry.bytes) is None:
            cache.import_file(src, sha)
        for p in parts:
            if cache.lookup(p.sha256, p.bytes) is None:
                cache.import_file(src.parent / p.location, p.sha256)
    finally:
        if remote is not None:
            remote.discard()
    lock = cache.lock("user-registry", timeout=30.0, stale=s.lock_stale)
    held = lock.acquire()
    try:
        existing = registry.read_registry_file(user) if os.path.lexists(user) else []
        kept = [e for e in existing if e.name != name and name not in e.aliases]
        atomic_write_bytes(user, json.dumps(registry.document(kept + [entry]), indent=2).encode())
    finally:
        if held:
            lock.release()
    cache.remember_name(name, sha)
    return dataclasses.replace(entry, origin=str(user))


def _user_entry(cache: Any, name: str) -> ModelEntry | None:
    """The user registry's entry called ``name`` (not an alias of another), if any."""
    user = cache.user_registry_path
    if not os.path.lexists(user):
        return None
    return next((e for e in registry.read_registry_file(user) if e.name == name), None)


def _check_classes(entry: ModelEntry, found: Any, output: dict[str, Any] | None) -> None:
    """A label set must name every class the model scores (when its output shape says how many)."""
    dims = (output or {}).get("shape") or []
    if entry.detection is not None:  # a detector's classes are one axis of its outputs: object_detector checks them
        return
    if len(dims) < 2 or not all(isinstance(d, int) for d in dims[1:]):
        return
    classes = 1
    for d in dims[1:]:
        classes *= d
    if classes != len(found):
        raise RegistryError(f"model {entry.name!r} outputs {classes} scores per input but its label set "
                            f"{found.name!r} has {len(found)} names; give the model's own labels")


def _label_spec(labels: str, model: str) -> str | dict[str, Any]:
    """A ``--labels`` value as a registry ``labels`` field: a shipped set's name, or a local label file
    imported into the cache and pinned by sha256."""
    if labels in labels_module.SHIPPED:
        return labels
    found = labels_module.resolve(labels, model)
    data = json.dumps(list(found.labels)).encode("utf-8")
    sha, path = model_cache().import_bytes(data)
    return {"name": found.name, "sha256": sha, "bytes": len(data), "sources": [path.as_uri()]}


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one cached blob, or one file or record the cache derived from a model.

    ``kind``: ``model`` (a blob: re-hashed), ``file`` (a blob the cache derived, e.g. a cut model's,
    named after what it was made of: ``mnv2 cut 1``), or what was derived (:mod:`zoo.hub.derived`): ``layer
    table``, ``cut model``, ``optimised graph`` (each rebuilt from its verified model and compared).
    ``status``: ``ok``; ``quarantined`` (bad, moved to ``quarantine/``); ``rebuilt`` (a derived
    file or record was bad: quarantined and built again from its model); ``corrupt`` (bad, but the
    cache is read-only so it stays where it is; it is never served); ``missing``; ``unused`` (a
    derived record of another machine or of a model no longer cached; ``zoo cache prune`` removes
    it). ``reason`` says what was wrong."""

    sha256: str
    names: tuple[str, ...]
    status: str
    path: str | None
    reason: str | None = None
    kind: str = "model"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _names_by_sha(reg: Registry, cache: ModelCache) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in reg:
        out.setdefault(entry.sha256, []).append(entry.name)
    for name, sha in cache.names().items():
        if name not in out.get(sha, []):
            out.setdefault(sha, []).append(name)
    return out


def _resolve_shas(names: Iterable[str], reg: Registry, cache: ModelCache) -> list[str]:
    shas = []
    known = cache.names()
    for name in names:
        entry = reg.get(name)
        if entry is not None:
            shas.append(entry.sha256)
        elif name in known:
            shas.append(known[name])
        else:
            reg.resolve(name)
    return shas


def verify(names: Iterable[str] | None = None, *, progress: bool | None = None) -> list[VerifyResult]:
    """Re-hash cached blobs (all of them, or those of ``names``) and quarantine any that changed; then
    check every file and record the cache derived from them (layer tables, cut models, optimised
    graphs) against a fresh derivation from the verified model, rebuilding any that does not match."""
    s = _settings(progress)
    cache = model_cache(s)
    reg = registry.load(s)
    shas = cache.shas() if names is None else _resolve_shas(names, reg, cache)
    labels = _names_by_sha(reg, cache)
    made = _derived_names(cache, labels)
    results = []
    for sha in shas:
        present = cache.blob_path(sha)
        names_of = tuple(labels.get(sha, ()) or made.get(sha, ()))  # a cut model's blob: "mnv2 cut 1"
        kind = "model" if sha in labels or sha not in made else "file"
        if not os.path.lexists(present):
            results.append(VerifyResult(sha, names_of, "missing", None, kind=kind))
            continue
        bar = progress_bar(f"verify {sha[:12]}", os.lstat(present).st_size, 0, s)
        try:
            problem = cache.blob_problem(sha, bar.update)
        finally:
            bar.close()
        if problem is None:
            results.append(VerifyResult(sha, names_of, "ok", str(present), kind=kind))
            continue
        try:
            cache.quarantine(sha, problem)
        except ChecksumError:  # bad but cannot be moved (a read-only cache): report it and go on
            results.append(VerifyResult(sha, names_of, "corrupt", str(present), problem, kind))
            continue
        results.append(VerifyResult(sha, names_of, "quarantined", None, problem, kind))
    return results + _verify_derived(cache, labels, None if names is None else set(shas))


def _derived_names(cache: ModelCache, labels: dict[str, list[str]], found: list | None = None) -> dict[str, list[str]]:
    """A derived model's sha256 -> what it is made of: "<model> cut <k>", "<model> in <locale>"."""
    found = list(derived.records(cache)) if found is None else found
    made: dict[str, list[str]] = {}
    for kind in ("locale", "cut"):  # a cut of a locale copy is named after the copy
        for _, rec in found:
            if isinstance(rec, derived.Record) and rec.derivation.kind == kind and rec.output is not None:
                d = rec.derivation
                models = labels.get(d.inputs["source"]) or made.get(d.inputs["source"]) or [d.inputs["source"][:12]]
                how = f"cut {d.inputs['cut'].get('index')}" if kind == "cut" else f"in {d.inputs.get('locale')}"
                made[rec.output.sha256] = [f"{m} {how}" for m in models]
    return made


def _verify_derived(cache: ModelCache, labels: dict[str, list[str]], wanted: set[str] | None) -> list[VerifyResult]:
    """Every derived record (of the models ``wanted``, by sha256; None: all) checked and rebuilt from
    its verified model: layer tables and cut models first, then optimised graphs (of cut models too)."""
    from zoo.hub import locale_copy, optimized
    from zoo.hub.cache import SHA_NAME, machine_fingerprint

    checks = {"locale": locale_copy.verify, "cuts": layer_cuts.verify_table, "cut": layer_cuts.verify_cut,
              "optimized": optimized.verify}
    found = list(derived.records(cache))
    made = _derived_names(cache, labels, found)
    if wanted is not None:  # the models asked for, and what was derived from them (a cut of a locale copy too)
        for kind in ("locale", "cut"):
            for _, rec in found:
                if isinstance(rec, derived.Record) and rec.derivation.kind == kind and rec.output is not None \
                        and rec.derivation.inputs.get("source") in wanted:
                    wanted = wanted | {rec.output.sha256}
    order = {"locale": 0, "cuts": 1, "cut": 2, "optimized": 3}  # each before what is derived from it
    found.sort(key=lambda f: order.get(f[1].derivation.kind, 4) if isinstance(f[1], derived.Record) else -1)
    machine = machine_fingerprint()
    results = []
    for path, rec in found:
        if not isinstance(rec, derived.Record):
            if wanted is None:
                status = "quarantined"
                try:
                    cache.quarantine_entry(path, f"derived record: {rec}")
                except OSError:
                    status = "corrupt"
                results.append(VerifyResult(path.stem[:64], (), status, None, rec, "derived record"))
            continue
        d = rec.derivation
        source = d.inputs.get("source")
        if wanted is not None and source not in wanted:
            continue
        kind, check = derived.KIND_NAMES.get(d.kind, "derived record"), checks.get(d.kind)
        names = tuple(labels.get(source, ()) or made.get(source, ()))
        shown = rec.output.sha256 if rec.output is not None else d.key
        if check is None:
            derived.discard(cache, d, f"unknown kind {d.kind!r:.40}")
            results.append(VerifyResult(shown, names, "quarantined", None, f"unknown kind {d.kind!r:.40}", kind))
            continue
        if d.inputs.get("machine", machine) != machine:
            results.append(VerifyResult(shown, names, "unused", str(path), "made on another machine or ONNX Runtime "
                                        "version; `zoo cache prune` removes it", kind))
            continue
        model = cache.lookup(source) if isinstance(source, str) and SHA_NAME.match(source) else None
        if model is None:
            results.append(VerifyResult(shown, names, "unused", str(path), "its model is not in the cache; "
                                        "`zoo cache prune` removes it", kind))
            continue
        try:
            status, reason = check(cache, rec, model)
        except ZooError as exc:  # e.g. a read-only cache: the bad file stays, and is never used
            status, reason = "corrupt", str(exc)
        after = derived.read(cache, d)
        where = None
        if after is not None and after.output is not None:
            shown = after.output.sha256
            where = str(cache.optimized_path(shown) if d.kind == "optimized" else cache.blob_path(shown))
        results.append(VerifyResult(shown, names, status, where or str(derived.record_path(cache, d.key)), reason, kind))
    return results


def remove(name: str) -> bool:
    """Delete a model's blob (and its bundle and external data files) from the cache. True if
    something was removed."""
    s = current_settings()
    cache = model_cache(s)
    reg = registry.load(s)
    (sha,) = _resolve_shas([name], reg, cache)
    entry = reg.get(name)
    parts = bundles.parts_of(entry.external_data, entry.name) if entry is not None and entry.sha256 == sha else ()
    removed = cache.remove(sha)
    if parts:
        cache.remove_bundle(bundles.bundle_id(sha, parts))
    for p in parts:
        removed = cache.remove(p.sha256) or removed
    return removed


def cache_dir() -> Path:
    """The cache folder (``ZOO_HOME``) this process uses."""
    return model_cache().root


def cache_size() -> dict[str, int]:
    """Bytes in the cache: ``blobs``, ``tmp`` (unfinished downloads), ``quarantine``, ``optimized``, ``total``."""
    return model_cache().size()


def prune_cache() -> PruneReport:
    """Delete orphaned downloads, stale locks, quarantined entries, and derived files and records no
    use of this cache can need (other machines', of models no longer cached, of older versions)."""
    s = current_settings()
    cache = model_cache(s)
    report = cache.prune(s.lock_stale)
    extra = derived.prune(cache, s.lock_stale)
    return dataclasses.replace(report, foreign_optimized=extra.files, stale_records=extra.records,
                               bytes_freed=report.bytes_freed + extra.bytes)
