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


def export_mirror(dest: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[ModelEntry]:
    """Write cached models to ``dest`` in the mirror layout, plus a ``registry.json`` describing them.

    ``dest/sha256/<hex>`` holds each blob; serve ``dest`` over HTTP(S), a shared file system or an
    object store and set ``ZOO_MIRRORS`` (and ``ZOO_REGISTRY=dest/registry.json``) on the air-gapped
    side. Named models that are not cached are pulled first. Exporting again adds to ``dest``.
    """
    s = current_settings()
    reg = registry.load(s)
    cache = model_cache(s)
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
