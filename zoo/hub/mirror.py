"""Exporting cached models as a mirror: the folder an air-gapped cluster's ``ZOO_MIRRORS`` points at."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from zoo.config import settings as current_settings
from zoo.errors import RegistryError
from zoo.hub import registry
from zoo.hub.api import pull
from zoo.hub.cache import hash_file, model_cache
from zoo.hub.fsutil import atomic_write_bytes, token
from zoo.hub.registry import ModelEntry


def _pinned_files(entry: ModelEntry) -> list[tuple[str, int | None]]:
    """(sha256, bytes) of every file an entry pins: the model, its external data, its files and label file."""
    files = [*(entry.external_data or {}).values(), *(entry.files or {}).values(),
             *([entry.labels] if isinstance(entry.labels, dict) else [])]
    return [(entry.sha256, entry.bytes), *((f["sha256"], f.get("bytes")) for f in files)]


def export_mirror(dest: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[ModelEntry]:
    """Write cached models to ``dest`` in the mirror layout, plus a ``registry.json`` describing them.

    ``dest/sha256/<hex>`` holds each blob (the model and every file it pins: external data, a tokenizer,
    a label file); serve ``dest`` over HTTP(S), a shared file system or an
    object store and set ``ZOO_MIRRORS`` (and ``ZOO_REGISTRY=dest/registry.json``) on the air-gapped
    side. Named models that are not cached are pulled first. Exporting again adds to ``dest``.
    """
    s = current_settings()
    reg = registry.load(s)
    cache = model_cache(s)
    if names is None:
        cached = set(cache.shas())
        entries = [e for e in reg if e.sha256 in cached]
    else:
        entries = [reg.resolve(n) for n in names]
    for entry in entries:  # a cache hit costs a stat; the files it pins may not have been fetched yet
        pull(entry.name)
    out = Path(dest)
    blob_dir = out / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        for sha, size in _pinned_files(entry):
            src = cache.lookup(sha, size)
            if src is None:
                raise RegistryError(f"model {entry.name!r}: file {sha[:12]} is not in the cache (or vanished during "
                                    "the export); pull the model again")
            target = blob_dir / sha
            if target.exists() and (size is None or target.stat().st_size == size) and hash_file(target) == sha:
                continue
            tmp = blob_dir / f".{sha}.{token()}.tmp"
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
