"""Files that travel with a model, pinned by sha256 like it: a text encoder's tokenizer, a label file.

A registry entry's ``files`` maps a role (``tokenizer``, ...) to ``{"sha256", "bytes", "sources"}``;
its ``labels`` may be such a file too. ``zoo pull`` fetches them with the model; a stage asks for
one by role (:func:`path_of`) and gets a verified file from the cache, downloaded on first use
(offline: only from mirrors and ``file://`` sources), never a half-written one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import ModelNotFoundError


def fetch(spec: dict[str, Any], label: str, settings: Settings | None = None) -> Path:
    """The verified cached file ``spec`` pins (``{"sha256", "bytes"?, "sources"}``), downloaded if missing."""
    from zoo.hub.cache import model_cache
    from zoo.hub.download import Target, download

    s = settings or current_settings()
    cache = model_cache(s)
    path = cache.lookup(spec["sha256"], spec.get("bytes"))
    if path is not None:
        return path
    target = Target(spec["sha256"], spec.get("bytes"), tuple(spec.get("sources", ())), label)
    urls = [u for u in target.candidate_urls(s) if not s.offline or u.startswith("file:")]
    return download(target, cache, s, urls=urls)


def path_of(model: str, role: str, settings: Settings | None = None) -> Path:
    """The ``role`` file of registry model ``model`` (a name, alias or sha256), fetched if needed."""
    from zoo.hub import registry
    from zoo.hub.refs import parse

    s = settings or current_settings()
    ref = parse(model)
    entry = None if ref.kind == "path" else registry.load(s).get(ref.text if ref.kind == "name" else ref.value)
    if entry is None or not entry.files or role not in entry.files:
        has = ", ".join(sorted(entry.files)) if entry is not None and entry.files else "none"
        raise ModelNotFoundError(f"model {model!r} has no {role} file in the registry (its files: {has})")
    return fetch(entry.files[role], f"the {role} of {entry.name!r}", s)


def fetch_all(entry: Any, settings: Settings | None = None) -> dict[str, Path]:
    """Every file of ``entry`` (and its pinned label file), fetched: what ``zoo pull`` does after the model."""
    out = {role: fetch(spec, f"the {role} of {entry.name!r}", settings) for role, spec in (entry.files or {}).items()}
    if isinstance(entry.labels, dict):
        out["labels"] = fetch(entry.labels, f"the labels of {entry.name!r}", settings)
    return out
