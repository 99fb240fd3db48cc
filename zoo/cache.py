"""The content-addressed model cache under ``ZOO_HOME``.

Layout (no symlinks, so NFS, Windows and object-store mounts work)::

    $ZOO_HOME/
      blobs/sha256/<hex>        verified model files, read-only, named by their sha256
      tmp/<hex>.<owner>.part    downloads in progress (+ .json with owner, URL and ETag for resume)
      locks/<hex>.lock          per-blob download locks (advisory; see zoo._lock)
      quarantine/<hex>.<time>   blobs whose bytes stopped matching their name; never served
      index.json                names -> sha256, and the (size, mtime, inode) of verified blobs
      registry.json             the user registry written by `zoo add`
      registries/               copies of ZOO_REGISTRY URLs, for offline use

``blobs/`` is itself a valid mirror (``ZOO_MIRRORS=file:///path/to/zoo/blobs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from zoo._fsutil import HOST, atomic_write_bytes, fsync_dir, owner_alive, token
from zoo._lock import BlobLock
from zoo._logging import get_logger
from zoo.errors import CacheReadOnlyError, ChecksumError

log = get_logger("cache")

HASH_CHUNK = 4 << 20


def hash_file(path: Path, progress: Callable[[int], Any] | None = None) -> str:
    """sha256 of a file, streamed in large chunks (hashlib releases the GIL on them)."""
    digest = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            if progress:
                progress(n)
    return digest.hexdigest()


def _stat_record(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


@dataclass
class Partial:
    """A download in progress: the bytes so far, their running hash, and where they came from."""

    path: Path
    meta_path: Path
    url: str | None = None
    validator: str | None = None
    size: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def write_meta(self, *, abandoned: bool = False) -> None:
        """Record owner, URL and validator next to the bytes, so another process can resume."""
        meta = {
            "host": HOST,
            "pid": os.getpid(),
            "started": time.time(),
            "url": self.url,
            "validator": self.validator,
            "abandoned": abandoned,
        }
        atomic_write_bytes(self.meta_path, json.dumps(meta).encode())

    def update(self, chunk: memoryview) -> None:
        """Account for ``chunk`` having been appended to the file."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def abandon(self) -> None:
        """Give up on this download but keep its bytes for the next pull to resume (or discard if empty)."""
        if self.size == 0:
            self.discard()
        else:
            self.write_meta(abandoned=True)

    def rehash(self) -> None:
        """Recompute the running hash of the bytes already on disk (after adopting a partial)."""
        self._hash = hashlib.sha256()
        with open(self.path, "rb", buffering=0) as fh:
            buf = bytearray(HASH_CHUNK)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                self._hash.update(view[:n])
        self.size = self.path.stat().st_size

    def reset(self) -> None:
        """Throw the bytes away and start from zero."""
        with open(self.path, "wb"):
            pass
        self.size = 0
        self._hash = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class PruneReport:
    temp_files: int = 0
    stale_locks: int = 0
    quarantined: int = 0
    bytes_freed: int = 0
    foreign_optimized: int = 0


class Cache:
    """One ``ZOO_HOME`` directory. Reading works on a read-only cache; writing needs permissions."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.quarantine_dir = self.root / "quarantine"
        self.index_path = self.root / "index.json"
        self.optimized_dir = self.root / "optimized"  # derived, per machine: see zoo._optimized

    # -- layout ------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.blobs_dir / sha256

    def ensure_writable(self) -> None:
        try:
            for d in (self.blobs_dir, self.tmp_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise CacheReadOnlyError(
                f"cache {self.root} is not writable ({exc.strerror}); point ZOO_HOME at a writable directory "
                "or fill this cache from a machine that can write it"
            ) from None
        if not os.access(self.tmp_dir, os.W_OK):
            raise CacheReadOnlyError(f"cache {self.root} is read-only; point ZOO_HOME at a writable directory")

    def lock(self, sha256: str, *, timeout: float, stale: float) -> BlobLock:
        return BlobLock(self.locks_dir / f"{sha256}.lock", timeout=timeout, stale=stale)

    # -- the index -----------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_path.read_text("utf-8"))
        except FileNotFoundError:
            return {"version": 1, "names": {}, "blobs": {}}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache index %s: %s", self.index_path, exc)
            return {"version": 1, "names": {}, "blobs": {}}
        data.setdefault("names", {})
        data.setdefault("blobs", {})
        return data

    def _update_index(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read-modify-write the index under a short lock. Losing an update only costs a re-hash."""
        lock = BlobLock(self.locks_dir / "index.lock", timeout=10.0, stale=30.0, poll=0.02)
        try:
            held = lock.acquire()
        except CacheReadOnlyError:
            return
        try:
            index = self.read_index()
            change(index)
            atomic_write_bytes(self.index_path, json.dumps(index, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.debug("cannot update cache index %s: %s", self.index_path, exc)
        finally:
            if held:
                lock.release()

    def remember_name(self, name: str, sha256: str) -> None:
        if self.read_index()["names"].get(name) != sha256:
            self._update_index(lambda idx: idx["names"].__setitem__(name, sha256))

    def names(self) -> dict[str, str]:
        """Names pulled into this cache, with the sha256 each resolved to."""
        return dict(self.read_index()["names"])

    def _record_verified(self, sha256: str, st: os.stat_result) -> None:
        record = _stat_record(st) | {"verified_at": time.time()}
        self._update_index(lambda idx: idx["blobs"].__setitem__(sha256, record))

    # -- blobs -----------------------------------------------------------------------------------
    def shas(self) -> list[str]:
        """sha256 of every blob present (verified or not)."""
        try:
            return sorted(p.name for p in self.blobs_dir.iterdir() if len(p.name) == 64 and p.is_file())
        except FileNotFoundError:
            return []

    def lookup(self, sha256: str, expected_size: int | None = None) -> Path | None:
        """The blob's path if present and intact, else None.

        A blob whose (size, mtime, inode) match the record made when it was verified is served
        without re-hashing; anything else is re-hashed, and quarantined if it no longer matches.
        """
        path = self.blob_path(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if expected_size is not None and st.st_size != expected_size:
            self.quarantine(sha256, f"size {st.st_size} differs from the registry's {expected_size}")
            return None
        record = self.read_index()["blobs"].get(sha256)
        if record and {k: record.get(k) for k in ("size", "mtime_ns", "ino")} == _stat_record(st):
            return path
        return self.verify_blob(sha256)

    def verify_blob(self, sha256: str, progress: Callable[[int], Any] | None = None) -> Path | None:
        """Re-hash a blob now: its path when intact, None (after quarantining it) when not."""
        path = self.blob_path(sha256)
        st = path.stat()
        actual = hash_file(path, progress)
        if actual != sha256:
            self.quarantine(sha256, f"its bytes hash to {actual}")
            return None
        self._record_verified(sha256, st)
        return path

    def quarantine(self, sha256: str, reason: str) -> Path:
        """Move a bad blob out of the way so it is never served again."""
        src = self.blob_path(sha256)
        dest = self.quarantine_dir / f"{sha256}.{time.strftime('%Y%m%dT%H%M%S')}.{token()}"
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
        except FileNotFoundError:
            return dest
        except OSError as exc:
            raise ChecksumError(
                f"cached blob {src} is corrupt ({reason}) and cannot be quarantined ({exc.strerror}); "
                "delete it by hand or run `zoo verify` with write access to the cache"
            ) from None
        log.warning("quarantined %s: %s (moved to %s)", src, reason, dest)
        self._update_index(lambda idx: idx["blobs"].pop(sha256, None))
        return dest

    def publish(self, partial: Partial, sha256: str) -> Path:
        """Atomically move a fully downloaded and verified file into place."""
        dest = self.blob_path(sha256)
        with open(partial.path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(partial.path, 0o444)
        os.replace(partial.path, dest)
        partial.meta_path.unlink(missing_ok=True)
        fsync_dir(self.blobs_dir)
        self._record_verified(sha256, dest.stat())
        return dest

    def import_file(self, src: Path, sha256: str) -> Path:
        """Copy a local file (already hashed by the caller) into the cache."""
        self.ensure_writable()
        partial = self.new_partial(sha256)
        try:
            shutil.copyfile(src, partial.path)
            partial.rehash()
            if partial.hexdigest() != sha256:
                raise ChecksumError(f"{src} changed while it was being imported into the cache")
            return self.publish(partial, sha256)
        finally:
            partial.discard()

    def import_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store bytes made here (e.g. a cut model) as a blob; returns (sha256, path)."""
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        path = self.lookup(sha, len(data))
        if path is not None:
            return sha, path
        self.ensure_writable()
        partial = self.new_partial(sha)
        try:
            partial.path.write_bytes(data)
            return sha, self.publish(partial, sha)
        finally:
            partial.discard()

    def remove(self, sha256: str) -> bool:
        """Delete a blob and every name pointing at it. True if a blob was removed."""
        path = self.blob_path(sha256)
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            removed = False

        def change(idx: dict[str, Any]) -> None:
            idx["blobs"].pop(sha256, None)
            for name in [n for n, s in idx["names"].items() if s == sha256]:
                del idx["names"][name]

        self._update_index(change)
        return removed

    # -- partial downloads -----------------------------------------------------------------------
    def new_partial(self, sha256: str) -> Partial:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        partial = Partial(*self.new_partial_paths(sha256))
        partial.write_meta()
        partial.path.touch()
        return partial

    def _orphans(self, stale: float, sha256: str = "") -> Iterator[tuple[Path, Path, dict[str, Any]]]:
        """(part, meta, meta data) of partial downloads whose owner died or stopped working."""
        if not self.tmp_dir.exists():
            return
        for meta_path in self.tmp_dir.glob(f"{sha256}*.json"):
            part = meta_path.with_suffix(".part")
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
                newest = max(p.stat().st_mtime for p in (part, meta_path) if p.exists())
            except (OSError, ValueError):
                continue
            alive = owner_alive(str(meta.get("host")), int(meta.get("pid", -1)))
            if alive is True and not meta.get("abandoned"):
                continue  # a live process on this host still writes it, however slowly
            if meta.get("abandoned") or alive is False or time.time() - newest > stale:
                yield part, meta_path, meta

    def adopt_partial(self, sha256: str, stale: float) -> Partial | None:
        """Take over the largest orphaned partial download of this blob, for a Range resume."""
        candidates = sorted(
            self._orphans(stale, sha256), key=lambda c: c[0].stat().st_size if c[0].exists() else -1, reverse=True
        )
        for part, meta_path, meta in candidates:
            mine = self.new_partial_paths(sha256)
            try:
                os.rename(part, mine[0])  # atomic: only one adopter wins
            except FileNotFoundError:
                continue
            meta_path.unlink(missing_ok=True)
            partial = Partial(mine[0], mine[1], url=meta.get("url"), validator=meta.get("validator"))
            partial.rehash()
            partial.write_meta()
            log.info("resuming partial download of %s (%d bytes from %s)", sha256, partial.size, partial.url)
            return partial
        return None

    def new_partial_paths(self, sha256: str) -> tuple[Path, Path]:
        stem = f"{sha256}.{token()}"
        return self.tmp_dir / f"{stem}.part", self.tmp_dir / f"{stem}.json"

    # -- housekeeping ----------------------------------------------------------------------------
    def size(self) -> dict[str, int]:
        """Bytes used by blobs, unfinished downloads, quarantined files and optimised model files."""

        def total(d: Path) -> int:
            return sum(p.stat().st_size for p in d.glob("*") if p.is_file()) if d.exists() else 0

        sizes = {"blobs": total(self.blobs_dir), "tmp": total(self.tmp_dir), "quarantine": total(self.quarantine_dir),
                 "optimized": total(self.optimized_dir)}
        sizes["total"] = sum(sizes.values())
        return sizes

    def prune(self, stale: float) -> PruneReport:
        """Delete orphaned partial downloads, stale locks, quarantined blobs, and optimised model
        files made for another ONNX Runtime version or CPU (left behind by upgrades)."""
        from zoo._lock import is_stale

        temp = locks = quarantined = freed = foreign = 0
        for part, meta_path, _ in list(self._orphans(stale)):
            for p in (part, meta_path):
                try:
                    freed += p.stat().st_size
                    p.unlink()
                except FileNotFoundError:
                    continue
            temp += 1
        if self.tmp_dir.exists():  # leftovers without metadata (e.g. crashed atomic writes)
            for p in self.tmp_dir.glob("*.part"):
                if not p.with_suffix(".json").exists() and time.time() - p.stat().st_mtime > stale:
                    freed += p.stat().st_size
                    p.unlink(missing_ok=True)
                    temp += 1
        if self.locks_dir.exists():
            for p in self.locks_dir.glob("*.lock"):
                if is_stale(p, stale):
                    p.unlink(missing_ok=True)
                    locks += 1
        if self.quarantine_dir.exists():
            for p in self.quarantine_dir.iterdir():
                freed += p.stat().st_size
                p.unlink()
                quarantined += 1
        if self.optimized_dir.exists():
            from zoo._optimized import for_this_machine

            for p in self.optimized_dir.glob("*.onnx"):
                if not for_this_machine(p):
                    freed += p.stat().st_size
                    p.unlink(missing_ok=True)
                    foreign += 1
        return PruneReport(temp, locks, quarantined, freed, foreign)

