"""Resolving model references: the one place that turns a :class:`~zoo.hub.refs.ModelRef` into a
sha256 (:func:`pin`), a download target (:func:`target`) or a verified local file with what is
known about it (:func:`locate`).

=========  ==============================================  =========================================
ref kind   sha256 and metadata                              local file
=========  ==============================================  =========================================
name       the registry entry (``ModelNotFoundError``       pulled into the cache
           with suggestions when no registry knows it)
sha256     the registry entry naming it, if any; else the  the cache, else ``ZOO_MIRRORS``
           file's own (input read from the model)
path       the file's sha256 and its own input (external   the file itself (never copied), its
           data outside its folder is refused)              external data files beside it
=========  ==============================================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import ModelNotFoundError, OfflineError
from zoo.hub import bundles, registry
from zoo.hub.bundles import Part
from zoo.hub.cache import ModelCache, hash_file, model_cache
from zoo.hub.download import Target, download
from zoo.hub.refs import ModelRef, parse
from zoo.hub.registry import ModelEntry, Registry


@dataclass(frozen=True)
class LocatedModel:
    """A model reference resolved to a verified local file and what is known about it."""

    ref: ModelRef
    path: Path
    sha256: str
    bytes: int | None
    sources: tuple[str, ...]
    entry: ModelEntry | None  # the registry entry, when a registry names the model
    input: dict[str, Any]
    preprocess: dict[str, Any] | None  # the entry's recipe; None for files and bare sha256s
    pinned_cuts: tuple[str, ...] | None  # cut tensors the entry pins
    parts: tuple[Part, ...] = ()  # external data files: ``path`` is then the graph file in its bundle


def _as_ref(ref: ModelRef | str) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else parse(ref)


def target(ref: ModelRef | str, reg: Registry) -> tuple[Target, ModelEntry | None]:
    """What to download for a name or sha256 reference, and the registry entry when one names it."""
    ref = _as_ref(ref)
    entry = reg.get(ref.text) if ref.kind == "name" else reg.get(ref.value)
    if entry is not None:
        return Target(entry.sha256, entry.bytes, entry.sources, repr(entry.name),
                      frozenset(entry.external_data or ())), entry
    if ref.kind == "sha256":  # a blob no registry names: only mirrors can serve it
        return Target(ref.value, None, (), f"blob {ref.value[:12]}"), None
    if ref.kind == "path":
        raise ModelNotFoundError(f"{ref.text!r} is a file path; a file is used where it is, not pulled into the cache "
                                 "(`zoo add FILE --name NAME` registers it)")
    raise reg.not_found(ref.text)


def pin(ref: ModelRef | str, settings: Settings | None = None) -> str:
    """The sha256 ``ref`` stands for now, without downloading anything (a file is hashed)."""
    ref = _as_ref(ref)
    if ref.kind == "sha256":
        return ref.value
    if ref.kind == "path":
        from zoo.hub.onnx_files import model_file

        return hash_file(model_file(ref.path))
    return registry.load(settings or current_settings()).resolve(ref.value).sha256


def _offline_error(ref: ModelRef, tgt: Target, s: Settings) -> OfflineError:
    size = f", {tgt.bytes:,} bytes" if tgt.bytes else ""
    return OfflineError(
        f"model {ref.text!r} (sha256 {tgt.sha256}{size}) is not in the cache {s.home} and ZOO_OFFLINE "
        f"forbids the network, and no local mirror (a file:// or folder entry of ZOO_MIRRORS) or file:// "
        f"source has it. On a machine with network access run:\n  zoo pull {ref.text}\n"
        "then copy that cache here, or export it with `zoo mirror DIR` and set ZOO_MIRRORS to DIR."
    )


def fetch_blob(ref: ModelRef | str, settings: Settings, cache: ModelCache | None = None) -> tuple[Path, ModelEntry | None]:
    """The verified cached file of a name or sha256 reference, downloaded when missing (offline: only
    from local mirrors and ``file://`` sources), and the registry entry naming it. For a model with
    external data files, every file is fetched and the path is its graph file in its bundle."""
    ref = _as_ref(ref)
    cache = cache or model_cache(settings)
    tgt, entry = target(ref, registry.load(settings))
    path = cache.lookup(tgt.sha256, tgt.bytes)
    if path is None:
        if settings.offline:  # local mirrors and file:// sources need no network: use them
            local = [u for u in tgt.candidate_urls(settings) if u.startswith("file:")]
            if not local:
                raise _offline_error(ref, tgt, settings)
            path = download(tgt, cache, settings, urls=local)
        else:
            path = download(tgt, cache, settings)
    if entry is not None:
        parts = bundles.parts_of(entry.external_data, entry.name)
        if parts:
            bundles.fetch_parts(cache, parts, repr(entry.name), settings)
            path = bundles.assemble(cache, entry.sha256, parts, repr(entry.name))
        cache.remember_name(entry.name, entry.sha256)
    return path, entry


def locate(ref: ModelRef | str, settings: Settings | None = None) -> LocatedModel:
    """Resolve ``ref`` to a verified local file (pulled when needed) and its sha256, sources, input
    description, preprocessing and pinned cuts (see the module documentation)."""
    from zoo.hub.onnx_files import check_external_data, describe_model, model_file

    ref = _as_ref(ref)
    s = settings or current_settings()
    if ref.kind == "path":
        path = model_file(ref.path)
        parts = bundles.file_parts(path, check_external_data(path))
        return LocatedModel(ref, path, hash_file(path), path.stat().st_size, (path.as_uri(),), None,
                            describe_model(path)["input"], None, None, parts)
    path, entry = fetch_blob(ref, s)
    if entry is not None:
        described = entry.input or describe_model(path)["input"]  # a catalogue entry need not say
        return LocatedModel(ref, path, entry.sha256, entry.bytes, entry.sources, entry, described, entry.preprocess,
                            entry.cuts, bundles.parts_of(entry.external_data, entry.name))
    return LocatedModel(ref, path, path.name, path.stat().st_size, (), None, describe_model(path)["input"], None, None)
