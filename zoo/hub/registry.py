"""Registries: which models exist, what their bytes hash to, and where to fetch them.

Several registries are merged, later ones winning on a name or alias:

1. the built-in ``registry.json`` shipped in the package,
2. entries returned by plugins' ``zoo_register_models`` hook,
3. each location in ``ZOO_REGISTRY`` (files or URLs, ``os.pathsep``-separated), in order,
4. the user registry ``$ZOO_HOME/registry.json`` that ``zoo add`` writes.

Every document is validated against ``registry.schema.json`` on load; errors name the registry,
the model and the field.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import (
    ModelNotFoundError,
    OfflineError,
    RegistryError,
    UnsafePathError,
    ZooError,
    capped,
    shown,
)
from zoo.hub.cache import model_cache
from zoo.hub.fsutil import atomic_write_bytes, read_regular
from zoo.hub.refs import SHA256_RE
from zoo.log import get_logger

log = get_logger("registry")

REGISTRY_LIMIT = 64 << 20  # the same for files and URLs: the full ONNX Model Zoo lists 184 models in 0.3 MB


@dataclass(frozen=True)
class ModelEntry:
    """One model of a registry (see ``registry.schema.json`` for each field's meaning)."""

    name: str
    description: str
    license: str
    task: str
    format: str
    sha256: str
    bytes: int
    sources: tuple[str, ...]
    input: dict[str, Any] | None  # None: read from the model file when it is needed
    preprocess: dict[str, Any] | None
    labels: str | dict[str, Any] | None
    aliases: tuple[str, ...] = ()
    cuts: tuple[str, ...] | None = None
    output: dict[str, Any] | None = None
    opset: int | None = None
    homepage: str | None = None
    files: dict[str, Any] | None = None  # role -> a file pinned by sha256 (zoo.hub.sidecars)
    external_data: dict[str, Any] | None = None  # location -> a weights file pinned by sha256 (zoo.hub.bundles)
    tolerance: float | None = None  # the smallest cosine `zoo check-model` accepts (zoo.consistency)
    detection: dict[str, Any] | None = None  # a detector's postprocessing (zoo.runtime.detection)
    origin: str = field(default="", compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> "ModelEntry":
        return cls(
            name=data["name"],
            description=data["description"],
            license=data["license"],
            task=data["task"],
            format=data["format"],
            sha256=data["sha256"],
            bytes=data["bytes"],
            sources=tuple(data["sources"]),
            input=data.get("input"),
            preprocess=data["preprocess"],
            labels=data["labels"],
            aliases=tuple(data.get("aliases", ())),
            cuts=tuple(data["cuts"]) if data.get("cuts") is not None else None,
            output=data.get("output"),
            opset=data.get("opset"),
            homepage=data.get("homepage"),
            files=data.get("files"),
            external_data=data.get("external_data"),
            tolerance=data.get("tolerance"),
            detection=data.get("detection"),
            origin=origin,
        )

    @property
    def total_bytes(self) -> int:
        """The model's size with its external data files."""
        return self.bytes + sum(f.get("bytes") or 0 for f in (self.external_data or {}).values())

    def to_dict(self) -> dict[str, Any]:
        """The entry as it is written in a registry file (``origin`` is not part of it)."""
        out: dict[str, Any] = {"name": self.name}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out.update(
            description=self.description,
            license=self.license,
            task=self.task,
            format=self.format,
            sha256=self.sha256,
            bytes=self.bytes,
            sources=list(self.sources),
            preprocess=self.preprocess,
            labels=self.labels,
        )
        if self.input is not None:
            out["input"] = self.input
        for key in ("output", "opset", "homepage", "files", "external_data", "tolerance", "detection"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.cuts is not None:
            out["cuts"] = list(self.cuts)
        return out


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The registry's JSON schema (zoo/hub/registry.schema.json)."""
    return json.loads(resources.files("zoo.hub").joinpath("registry.schema.json").read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def _validator():
    """jsonschema's validator: every error with its path, for the messages (slow to import: ~100 ms)."""
    import jsonschema

    document = schema()
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    return cls(document)


def _fast_validator():
    """fastjsonschema's compiled check (generated into ``zoo.hub._schema_check``, ~1 ms a document): the
    yes/no on every load, so a command does not pay for jsonschema (~100 ms) unless a registry is
    actually invalid."""
    from zoo.hub._schema_check import validate

    return validate


def _schema_errors(doc: Any) -> list[str]:
    """Messages for every schema violation of ``doc`` (empty when it is valid)."""
    import fastjsonschema

    try:
        _fast_validator()(doc)
        return []
    except fastjsonschema.JsonSchemaValueException as fast:
        if _longest_array(doc) > _DETAILED_ARRAY_LIMIT:  # the detailed validator is quadratic on uniqueItems
            path = [int(p) if isinstance(p, str) and p.isdigit() else p for p in list(fast.path or [])[1:]]
            return [f"  {_where(doc, path)}: {capped(fast.message, 300)}"]
        detailed = sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        if not detailed:  # the two validators disagree: trust the refusal, say what it was
            return [f"  {capped(fast.message, 300)}"]
    return [f"  {_where(doc, list(err.absolute_path))}: {capped(err.message, 300)}" for err in detailed]


_DETAILED_ARRAY_LIMIT = 1000  # far more than any field allows (sources: 32); past it only the first error is told


def _where(doc: Any, path: list[Any]) -> str:
    """Where in a registry document an error is: the model by name and index, and the field."""
    if len(path) >= 2 and path[0] == "models" and isinstance(path[1], int) and isinstance(doc.get("models"), list):
        model = doc["models"][path[1]]
        label = model.get("name") if isinstance(model, dict) else None
        return f"model {shown(label)} (models[{path[1]}]) field {_field_path(path[2:])!r}"
    return _field_path(path)


def _longest_array(doc: Any) -> int:
    """The length of the longest array anywhere in ``doc`` (a walk without recursion)."""
    longest, stack = 0, [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            longest = max(longest, len(node))
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return longest


def _field_path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def check_name(name: str, what: str = "model name") -> str:
    """Reject names that could be read as a path (``..``, separators, drive letters, UNC) and names
    that :func:`zoo.hub.refs.parse` reads as something else than a name (a path, a sha256): such
    an entry could be pulled by name but never used by the stages, ``zoo.cut`` or ``zoo featurize``."""
    if not isinstance(name, str) or not re.match(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$", name):
        raise UnsafePathError(
            f"invalid {what} {shown(name)}: use letters, digits, '.', '_', '+', '-' "
            "(no path separators, drive letters or '..')"
        )
    from zoo.hub import refs

    kind = refs.parse(name).kind
    if kind != "name":
        why = "ends with '.onnx'" if kind == "path" else "is 64 hexadecimal digits"
        raise UnsafePathError(
            f"invalid {what} {shown(name)}: it {why}, so every model reference would read it as a "
            f"{'file path' if kind == 'path' else 'sha256'}, not a name; choose a name without it "
            f"(e.g. {shown(name[:-5] if kind == 'path' else 'my-' + name[:8])})"
        )
    return name


def _check_source(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise UnsafePathError(f"file source {shown(url)} must be an absolute file:///path URL")
    if parts.scheme == "hf" and ".." in parts.path.split("/"):
        raise UnsafePathError(f"hf source {shown(url)} contains '..'")


def parse_document(doc: Any, origin: str, *, trusted: bool = False) -> list[ModelEntry]:
    """Validate one registry document and return its entries, or raise :class:`RegistryError`.

    ``trusted`` skips the schema check (not the name and source checks): only for the registry
    shipped inside the package, which the test suite validates against the schema."""
    errors = [] if trusted else _schema_errors(doc)
    if errors:
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise RegistryError(f"registry {origin} is invalid:\n" + "\n".join(errors[:5]) + more)
    entries = []
    seen: dict[str, str] = {}
    for data in doc["models"]:
        for label in (data["name"], *data.get("aliases", ())):
            check_name(label)
            if label in seen:
                raise RegistryError(
                    f"registry {origin}: {shown(label)} is used by both {shown(seen[label])} and {shown(data['name'])}"
                )
            seen[label] = data["name"]
        pinned = [*(data.get("files") or {}).values(), *(data.get("external_data") or {}).values(),
                  *([data["labels"]] if isinstance(data["labels"], dict) else [])]
        try:
            for url in [*data["sources"], *(u for f in pinned for u in f["sources"])]:
                _check_source(url)
        except UnsafePathError as exc:
            raise UnsafePathError(f"registry {origin}: model {shown(data['name'])}: {exc}") from None
        if data["preprocess"] is not None and data.get("input") is None:
            raise RegistryError(f"registry {origin}: model {shown(data['name'])} has a preprocess recipe but no input: say "
                                "which input the prepared images feed (name, layout, shape, dtype)")
        entries.append(ModelEntry.from_dict(data, origin))
    return entries


def parse_text(text: str | bytes, origin: str, *, trusted: bool = False) -> list[ModelEntry]:
    """Parse and validate one registry document. Any malformed input (bad encoding, bad JSON, nesting
    deep enough to exhaust the parser, more than ``REGISTRY_LIMIT`` bytes, wrong types) is a
    :class:`RegistryError` naming ``origin``, never another exception."""
    if len(text) > REGISTRY_LIMIT:
        raise RegistryError(f"registry {origin} is larger than {REGISTRY_LIMIT:,} bytes; refusing to parse it")
    try:
        doc = json.loads(text)
    except RecursionError:
        raise RegistryError(f"registry {origin} is nested too deeply to be a registry") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RegistryError(f"registry {origin} is not valid JSON: {exc}") from None
    try:
        return parse_document(doc, origin, trusted=trusted)
    except RecursionError:
        raise RegistryError(f"registry {origin} is nested too deeply to be a registry") from None


def read_registry_file(path: Path, origin: str | None = None, *, hint: str = "") -> list[ModelEntry]:
    """Parse a registry file (no links followed, at most ``REGISTRY_LIMIT`` bytes), or raise RegistryError.

    ``origin`` is what the entries and errors call the file (default: its path); ``hint`` is added
    to read errors (e.g. where the path came from)."""
    origin = origin or str(path)
    try:
        data = read_regular(path, REGISTRY_LIMIT)
    except ValueError:
        raise RegistryError(f"registry {origin} is larger than {REGISTRY_LIMIT:,} bytes; refusing to parse it") from None
    except OSError as exc:
        raise RegistryError(f"cannot read registry {origin}{hint}: {exc.strerror or exc}") from None
    return parse_text(data, origin)


def document(entries: Iterable[ModelEntry], description: str | None = None) -> dict[str, Any]:
    """A registry document holding ``entries``, ready for ``json.dump``."""
    doc: dict[str, Any] = {"schema_version": 1}
    if description:
        doc["description"] = description
    doc["models"] = [e.to_dict() for e in entries]
    return doc


class Registry:
    """The merged view of several registries: look models up by name, alias or sha256."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self._by_name: dict[str, ModelEntry] = {}
        self._alias: dict[str, str] = {}
        for entry in entries:
            self._by_name.pop(entry.name, None)
            self._alias.pop(entry.name, None)
            self._by_name[entry.name] = entry
            for alias in entry.aliases:
                self._alias[alias] = entry.name

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self):
        return iter(sorted(self._by_name.values(), key=lambda e: e.name))

    def aliases_of(self, name: str) -> list[str]:
        """Aliases that currently resolve to ``name`` (a later registry may have taken some over)."""
        return sorted(a for a, target in self._alias.items() if target == name and a not in self._by_name)

    def get(self, ref: str) -> ModelEntry | None:
        """The entry for a name, alias or sha256 (``sha256:<hex>`` or bare hex), or None."""
        if ref in self._by_name:
            return self._by_name[ref]
        if ref in self._alias:
            return self._by_name.get(self._alias[ref])
        m = SHA256_RE.match(ref)
        if m:
            for entry in self._by_name.values():
                if entry.sha256 == m.group(1):
                    return entry
        return None

    def resolve(self, ref: str) -> ModelEntry:
        """Like :meth:`get`, but raise :class:`ModelNotFoundError` with suggestions."""
        entry = self.get(ref)
        if entry is None:
            raise self.not_found(ref)
        return entry

    def not_found(self, ref: str) -> ModelNotFoundError:
        """The error for a name no registry knows, with the closest names as suggestions."""
        import difflib

        names = list(self._by_name) + list(self._alias)
        close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5) if len(ref) <= 256 else []
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return ModelNotFoundError(
            f"unknown model {shown(ref)}.{hint} `zoo ls` lists the models every registry knows; "
            "`zoo add FILE --name NAME` registers a local ONNX file."
        )


@functools.lru_cache(maxsize=1)
def _builtin_entries() -> tuple[ModelEntry, ...]:
    text = resources.files("zoo.hub").joinpath("registry.json").read_text("utf-8")
    return tuple(parse_text(text, "built-in registry.json", trusted=True))


def _read_location(location: str, settings: Settings) -> list[ModelEntry]:
    """Read a ZOO_REGISTRY location: a local path, or a URL with a cached copy for offline use."""
    parts = urlsplit(location)
    if len(parts.scheme) <= 1 or parts.scheme == "file":  # a path (or a Windows drive letter)
        path = Path(parts.path if parts.scheme == "file" else location).expanduser()
        return read_registry_file(path, hint=" (from ZOO_REGISTRY)")

    from zoo.hub import sources

    copy = model_cache(settings).registry_copy_path(location)
    if settings.offline:
        if not copy.exists():
            raise OfflineError(
                f"registry {location} (from ZOO_REGISTRY) has never been fetched and ZOO_OFFLINE is set; "
                "run any zoo command once with network access, or point ZOO_REGISTRY at a local copy"
            )
        return read_registry_file(copy, f"{location} (cached copy)")
    try:
        data = sources.read_all(location, settings, limit=REGISTRY_LIMIT)
        entries = parse_text(data, location)
    except ZooError as exc:  # unreachable, or answered with something that is not a valid registry
        if os.path.lexists(copy):
            log.warning("cannot use registry %s (%s); using the copy cached at %s", location, exc, copy)
            return read_registry_file(copy, f"{location} (cached copy)")
        raise RegistryError(f"cannot fetch registry {location} (from ZOO_REGISTRY): {exc}") from None
    try:
        atomic_write_bytes(copy, data)
    except OSError as exc:
        log.debug("cannot keep a copy of registry %s: %s", location, exc)
    return entries


def user_registry_path(settings: Settings | None = None) -> Path:
    """The user registry that ``zoo add`` writes (in ``ZOO_HOME``)."""
    return model_cache(settings).user_registry_path


def load(settings: Settings | None = None) -> Registry:
    """Merge every registry in order (built-in, plugins, ZOO_REGISTRY, user) and return the result."""
    settings = settings or current_settings()
    entries = list(_builtin_entries())

    from zoo.plugins import manager

    for plugin_name, docs in manager.registered_models(settings):
        for data in docs:
            entries.extend(parse_document({"schema_version": 1, "models": [data]}, f"plugin {plugin_name}"))
    for location in settings.registries:
        entries.extend(_read_location(location, settings))
    user = user_registry_path(settings)
    if os.path.lexists(user):
        entries.extend(read_registry_file(user))
    return Registry(entries)
