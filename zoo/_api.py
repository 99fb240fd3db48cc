"""The Python API documented in README.md: pull, info, models, add, verify, remove, export_mirror."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from zoo import _download, registry
from zoo._fsutil import atomic_write_bytes, token
from zoo._logging import get_logger
from zoo._presets import preset
from zoo.cache import Cache, hash_file
from zoo.config import Settings, settings as current_settings
from zoo.errors import ChecksumError, ModelNotFoundError, OfflineError, RegistryError
from zoo.registry import SHA256_RE, ModelEntry, Registry

if TYPE_CHECKING:
    from zoo._cuts import Cut

log = get_logger("api")


def _settings(progress: bool | None = None) -> Settings:
    s = current_settings()
    return dataclasses.replace(s, progress=progress) if progress is not None else s


def _target(ref: str, reg: Registry) -> tuple[_download.Target, ModelEntry | None]:
    entry = reg.get(ref)
    if entry is not None:
        return _download.Target(entry.sha256, entry.bytes, entry.sources, repr(entry.name)), entry
    match = SHA256_RE.match(ref)
    if match:  # a blob no registry names: only mirrors can serve it
        return _download.Target(match.group(1), None, (), f"blob {match.group(1)[:12]}"), None
    reg.resolve(ref)  # raises ModelNotFoundError with suggestions
    raise AssertionError("unreachable")


def _offline_error(ref: str, target: _download.Target, s: Settings) -> OfflineError:
    size = f", {target.bytes:,} bytes" if target.bytes else ""
    return OfflineError(
        f"model {ref!r} (sha256 {target.sha256}{size}) is not in the cache {s.home} and ZOO_OFFLINE "
        f"forbids the network, and no local mirror (a file:// or folder entry of ZOO_MIRRORS) or file:// "
        f"source has it. On a machine with network access run:\n  zoo pull {ref}\n"
        "then copy that cache here, or export it with `zoo mirror DIR` and set ZOO_MIRRORS to DIR."
    )


def pull(name_or_sha: str, *, progress: bool | None = None) -> Path:
    """Return the local path of a verified model, downloading it if it is not cached.

    ``name_or_sha`` is a registry name, an alias (``resnet50``), or a sha256 (``sha256:<hex>`` or
    bare hex). A cache hit costs a ``stat`` and no hashing. Raises :class:`~zoo.errors.ZooError`
    subclasses: ``ModelNotFoundError``, ``OfflineError``, ``DownloadError``/``ChecksumError``,
    ``InsufficientSpaceError``, ``CacheReadOnlyError``.
    """
    s = _settings(progress)
    cache = Cache(s.home)
    target, entry = _target(name_or_sha, registry.load(s))
    path = cache.lookup(target.sha256, target.bytes)
    if path is None:
        if s.offline:  # local mirrors and file:// sources need no network: use them
            local = [u for u in target.candidate_urls(s) if u.startswith("file:")]
            if not local:
                raise _offline_error(name_or_sha, target, s)
            path = _download.fetch(target, cache, s, urls=local)
        else:
            path = _download.fetch(target, cache, s)
    if entry is not None:
        cache.remember_name(entry.name, entry.sha256)
    return path


def models(*, cached: bool = False) -> list[ModelEntry]:
    """Every model the merged registries know, sorted by name (only cached ones with ``cached``)."""
    s = current_settings()
    entries = list(registry.load(s))
    if cached:
        present = set(Cache(s.home).shas())
        entries = [e for e in entries if e.sha256 in present]
    return entries


def info(name: str) -> dict[str, Any]:
    """A model's registry entry plus where it came from and whether (and where) it is cached."""
    s = current_settings()
    reg = registry.load(s)
    entry = reg.resolve(name)
    path = Cache(s.home).blob_path(entry.sha256)
    out = entry.to_dict()
    out["aliases"] = reg.aliases_of(entry.name)
    out["origin"] = entry.origin
    out["cached"] = path.exists()
    out["path"] = str(path) if path.exists() else None
    if path.exists():
        from zoo import _cuts

        out["available_cuts"] = [c.to_dict() for c in _cuts.cached_analysis(Cache(s.home), entry.sha256, path, entry.cuts)]
    return out


def cuts(name: str) -> list["Cut"]:
    """Every layer cut of a model (pulled if needed): index, tensor, op, shape, dtype, feature length."""
    from zoo import _cuts

    s = current_settings()
    entry = registry.load(s).get(name)
    path = Path(name) if name.endswith(".onnx") and Path(name).is_file() else pull(name)
    sha = entry.sha256 if entry else (hash_file(path) if name.endswith(".onnx") else path.name)
    return _cuts.cached_analysis(Cache(s.home), sha, path, entry.cuts if entry else None)


def cut(name: str, cut: int | str = 1) -> Path:
    """The ONNX file of ``name`` cut ``cut`` layers from its head (or at a tensor name), cached by content."""
    import tempfile

    from zoo import _modelref

    spec, runnable = _modelref.resolve(name, cut, preprocess=None)
    if isinstance(runnable, bytes):  # read-only cache: hand out a private copy
        out = Path(tempfile.mkdtemp(prefix="zoo-cut-")) / f"{spec.sha256}.onnx"
        out.write_bytes(runnable)
        return out
    return runnable


def add(
    path: str | os.PathLike[str],
    *,
    name: str,
    preprocess: str | dict[str, Any] | None = "imagenet",
    description: str | None = None,
    license: str = "unknown",
    task: str = "image-classification",
    labels: str | None = None,
    aliases: Iterable[str] = (),
) -> ModelEntry:
    """Register a local ONNX file under ``name`` in the user registry and import it into the cache.

    The input name, shape, dtype and layout are read from the model; ``preprocess`` is a preset
    name (``imagenet``, ``efficientnet-lite``, ``none``) or a full dict. Re-adding a name replaces it.
    """
    from zoo._onnx_checks import describe_model

    s = current_settings()
    registry.check_name(name)
    for alias in aliases:
        registry.check_name(alias, "alias")
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise ModelNotFoundError(f"no such model file {src}")
    described = describe_model(src)
    sha = hash_file(src)
    data: dict[str, Any] = {
        "name": name,
        "aliases": list(aliases),
        "description": description or f"{src.name}, added with `zoo add`",
        "license": license,
        "task": task,
        "format": "onnx",
        "sha256": sha,
        "bytes": src.stat().st_size,
        "sources": [src.as_uri()],
        "preprocess": preset(preprocess),
        "labels": labels,
        **described,
    }
    if not data["aliases"]:
        del data["aliases"]
    cache = Cache(s.home)
    user = registry.user_registry_path(s)
    entry = registry.parse_document({"schema_version": 1, "models": [data]}, str(user))[0]
    cache.ensure_writable()
    if cache.lookup(sha, entry.bytes) is None:
        cache.import_file(src, sha)
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


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of re-hashing one cached blob.

    ``status``: ``ok``; ``quarantined`` (bad, moved to ``quarantine/``); ``corrupt`` (bad, but the
    cache is read-only so it stays where it is; it is never served); ``missing``. ``reason`` says
    what was wrong."""

    sha256: str
    names: tuple[str, ...]
    status: str
    path: str | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _names_by_sha(reg: Registry, cache: Cache) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in reg:
        out.setdefault(entry.sha256, []).append(entry.name)
    for name, sha in cache.names().items():
        if name not in out.get(sha, []):
            out.setdefault(sha, []).append(name)
    return out


def _resolve_shas(names: Iterable[str], reg: Registry, cache: Cache) -> list[str]:
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
    """Re-hash cached blobs (all of them, or those of ``names``); quarantine any that changed."""
    s = _settings(progress)
    cache = Cache(s.home)
    reg = registry.load(s)
    shas = cache.shas() if names is None else _resolve_shas(names, reg, cache)
    labels = _names_by_sha(reg, cache)
    results = []
    for sha in shas:
        present = cache.blob_path(sha)
        names_of = tuple(labels.get(sha, ()))
        if not os.path.lexists(present):
            results.append(VerifyResult(sha, names_of, "missing", None))
            continue
        bar = _download._progress_bar(f"verify {sha[:12]}", os.lstat(present).st_size, 0, s)
        try:
            problem = cache.blob_problem(sha, bar.update)
        finally:
            bar.close()
        if problem is None:
            results.append(VerifyResult(sha, names_of, "ok", str(present)))
            continue
        try:
            cache.quarantine(sha, problem)
        except ChecksumError:  # bad but cannot be moved (a read-only cache): report it and go on
            results.append(VerifyResult(sha, names_of, "corrupt", str(present), problem))
            continue
        results.append(VerifyResult(sha, names_of, "quarantined", None, problem))
    return results


def remove(name: str) -> bool:
    """Delete a model's blob from the cache. True if something was removed."""
    s = current_settings()
    cache = Cache(s.home)
    (sha,) = _resolve_shas([name], registry.load(s), cache)
    return cache.remove(sha)


def export_mirror(dest: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[ModelEntry]:
    """Write cached models to ``dest`` in the mirror layout, plus a ``registry.json`` describing them.

    ``dest/sha256/<hex>`` holds each blob; serve ``dest`` over HTTP(S), a shared file system or an
    object store and set ``ZOO_MIRRORS`` (and ``ZOO_REGISTRY=dest/registry.json``) on the air-gapped
    side. Named models that are not cached are pulled first. Exporting again adds to ``dest``.
    """
    s = current_settings()
    reg = registry.load(s)
    cache = Cache(s.home)
    if names is None:
        entries = [e for e in reg if e.sha256 in set(cache.shas())]
    else:
        entries = [reg.resolve(n) for n in names]
        for entry in entries:
            pull(entry.name)
    out = Path(dest)
    blob_dir = out / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        src = cache.lookup(entry.sha256, entry.bytes)
        if src is None:
            raise RegistryError(f"model {entry.name!r} vanished from the cache during export; pull it again")
        target = blob_dir / entry.sha256
        if target.exists() and target.stat().st_size == entry.bytes and hash_file(target) == entry.sha256:
            continue
        tmp = blob_dir / f".{entry.sha256}.{token()}.tmp"
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    reg_path = out / "registry.json"
    previous = registry.parse_text(reg_path.read_bytes(), str(reg_path)) if reg_path.exists() else []
    chosen = {e.name for e in entries}
    merged = [e for e in previous if e.name not in chosen] + entries
    doc = registry.document(merged, "exported by `zoo mirror`; serve this folder and set ZOO_MIRRORS to its URL")
    atomic_write_bytes(reg_path, json.dumps(doc, indent=2).encode())
    return entries
