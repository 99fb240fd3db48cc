"""The content-addressed model cache under ``ZOO_HOME``: the one owner of its layout.

Layout (no symlinks, so NFS, Windows and object-store mounts work)::

    $ZOO_HOME/
      blobs/sha256/<hex>        verified model files, read-only, named by their sha256 (cut models too)
      tmp/<hex>.<owner>.part    download slots in progress (+ .json with owner, URL and ETag for resume)
      locks/<hex>.lock          per-blob download locks (advisory; see zoo.hub.locks)
      quarantine/<hex>.<time>   blobs whose bytes stopped matching their name; never served
      index.json                names -> sha256, and the (size, mtime, inode) of verified blobs
      bundles/<hex>/            a multi-file model as ONNX Runtime opens it: hard links to its blobs (zoo.hub.bundles)
      derived/<key>.json        what the cache made from a verified model (a layer table, a cut model, an
                                optimised graph): its inputs, its output's sha256, a checksum (zoo.hub.derived)
      optimized/<hex>.onnx      ONNX Runtime's optimised form of a model for one machine, named by its own
                                sha256 and recorded in derived/ (zoo.hub.optimized)
      registry.json             the user registry written by `zoo add`
      registries/               copies of ZOO_REGISTRY URLs, for offline use

``blobs/`` is itself a valid mirror (``ZOO_MIRRORS=file:///path/to/zoo/blobs``). Build a cache with
:func:`model_cache`; a download streams into a :class:`DownloadSlot` the cache hands out, and only
:meth:`DownloadSlot.publish` puts verified bytes into ``blobs/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import CacheError, CacheReadOnlyError, ChecksumError
from zoo.hub.fsutil import (
    HOST,
    UnsafeEntry,
    atomic_write_bytes,
    fsync_dir,
    lstat_regular,
    open_regular,
    owner_alive,
    read_regular,
    token,
)
from zoo.hub.locks import BlobLock, is_stale
from zoo.log import get_logger

log = get_logger("cache")

HASH_CHUNK = 4 << 20
INDEX_LIMIT = 64 << 20  # the index lists names and stat records: far below this
SHA_NAME = re.compile(r"^[0-9a-f]{64}$")


def hash_file(path: Path, progress: Callable[[int], Any] | None = None) -> str:
    """sha256 of a file, streamed in large chunks (hashlib releases the GIL on them)."""
    with open(path, "rb", buffering=0) as fh:
        return hash_fd(fh.fileno(), progress)


def hash_fd(fd: int, progress: Callable[[int], Any] | None = None) -> str:
    """sha256 of an open file from its first byte (the descriptor's own position is left alone)."""
    digest = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with os.fdopen(os.dup(fd), "rb", buffering=0) as fh:
        fh.seek(0)
        while n := fh.readinto(buf):
            digest.update(view[:n])
            if progress:
                progress(n)
    return digest.hexdigest()


def _checked(sha256: str) -> str:
    """``sha256`` if it is 64 lower-case hex digits: a name taken from a planted index or record is
    refused, so no path the cache builds can lead out of its folders."""
    if not isinstance(sha256, str) or not SHA_NAME.match(sha256):
        raise CacheError(f"{sha256!r:.80} is not a sha256; refusing to use it as a cache path")
    return sha256


_STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino")


def _stat_record(st: os.stat_result) -> dict[str, int]:
    """What must stay the same for a verified blob to be served without re-hashing. The ctime is in
    it because no one can set it back: a file edited in place with its mtime restored is re-hashed."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


_VALIDATOR_OK = re.compile(r'^[\x21-\x7e][\x20-\x7e]{0,255}$')  # one printable header value, no CR/LF


@dataclass
class DownloadSlot:
    """A download in progress: a file in ``tmp/`` this process created (or adopted) and holds open, its
    hash so far, and where its bytes came from. The downloader streams into it; :meth:`publish` moves
    the verified file into ``blobs/``.

    Every read and write goes through the descriptor opened without following links, so a path
    swapped for a symlink after the fact cannot redirect a write out of the cache.
    """

    cache: "ModelCache" = field(repr=False)
    sha256: str
    path: Path
    meta_path: Path
    fd: int
    url: str | None = None
    validator: str | None = None
    size: int = 0
    settled: bool = False  # published or discarded: nothing left to keep for a resume
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

    def write_at(self, offset: int, data: memoryview) -> None:
        """Write all of ``data`` at ``offset`` (a short write is continued, an error raised)."""
        while data:
            n = os.pwrite(self.fd, data, offset)
            data, offset = data[n:], offset + n

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def update(self, chunk: memoryview) -> None:
        """Account for ``chunk`` having been written after the bytes hashed so far."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def abandon(self) -> None:
        """Give up on this download but keep its bytes for the next pull to resume (or discard if empty)."""
        self.close()
        if self.size == 0:
            self.discard()
            return
        try:
            self.write_meta(abandoned=True)
        except OSError as exc:  # e.g. the disk is full: the old record still lets a later pull adopt it
            log.warning("cannot mark %s as resumable (%s); a later pull resumes it once this process exits",
                        self.path, exc.strerror or exc)

    def rehash(self) -> None:
        """Recompute the running hash of the bytes already on disk (after adopting a partial)."""
        self._hash = hashlib.sha256()
        self.size = 0
        with os.fdopen(os.dup(self.fd), "rb", buffering=0) as fh:
            fh.seek(0)
            buf = bytearray(HASH_CHUNK)
            while n := fh.readinto(buf):
                self.update(memoryview(buf)[:n])

    def reset(self) -> None:
        """Throw the bytes away and start from zero."""
        self.truncate(0)
        self.size = 0
        self._hash = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        self.settled = True
        for p in (self.path, self.meta_path):
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:
                log.debug("cannot remove %s: %s", p, exc)

    def publish(self) -> Path:
        """Move the complete, verified bytes into ``blobs/`` (see :meth:`ModelCache.publish`)."""
        return self.cache.publish(self)


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """A partial download's record, with every field checked: the file may have been planted."""
    data = json.loads(read_regular(meta_path, 64 << 10))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    url, validator = data.get("url"), data.get("validator")
    return {
        "host": str(data.get("host")),
        "pid": int(data.get("pid", -1)),
        "abandoned": data.get("abandoned") is True,
        "url": url if isinstance(url, str) else None,
        "validator": validator if isinstance(validator, str) and _VALIDATOR_OK.match(validator) else None,
    }


@dataclass(frozen=True)
class PruneReport:
    temp_files: int = 0
    stale_locks: int = 0
    quarantined: int = 0
    bytes_freed: int = 0
    foreign_optimized: int = 0  # optimised graphs of another machine or runtime, or no longer recorded
    stale_records: int = 0  # derived records of other machines, of models no longer cached, or of old versions


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> str:
    """A short digest of what a per-machine derived file depends on: the ONNX Runtime version, the
    architecture and the CPU's feature flags (ONNX Runtime bakes in layouts for the instruction set)."""
    import platform

    import onnxruntime as ort

    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].strip() for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    parts = (ort.__version__, platform.machine(), " ".join(sorted(flags.split())))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def model_cache(settings: Settings | None = None) -> "ModelCache":
    """The cache of ``settings.home`` (default: the current ``ZOO_HOME``): the one place a cache is built."""
    return ModelCache((settings or current_settings()).home)


class ModelCache:
    """One ``ZOO_HOME`` directory. Reading works on a read-only cache; writing needs permissions.

    Everything under the root is treated as hostile: no symlink or other non-regular entry is
    followed, written through, renamed into ``blobs/`` or served. Files are opened with
    ``O_NOFOLLOW`` and checked with ``fstat``; a planted entry is moved to ``quarantine/`` with a
    warning (``zoo cache prune`` deletes it).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.quarantine_dir = self.root / "quarantine"
        self.index_path = self.root / "index.json"
        self.optimized_dir = self.root / "optimized"  # derived, per machine: see zoo.hub.optimized
        self.derived_dir = self.root / "derived"  # records of what the cache derives: see zoo.hub.derived
        self.legacy_cuts_dir = self.root / "cuts"  # sparkzoo <= 0.x: unverified cut records, removed by prune
        self.bundles_dir = self.root / "bundles"
        self.registries_dir = self.root / "registries"
        self.user_registry_path = self.root / "registry.json"

    # -- layout ------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.blobs_dir / _checked(sha256)

    def bundle_path(self, bundle_id: str) -> Path:
        """The folder a multi-file model runs from (see :mod:`zoo.hub.bundles`)."""
        return self.bundles_dir / _checked(bundle_id)

    def remove_bundle(self, bundle_id: str) -> None:
        """Delete a bundle folder (links only: its blobs stay) without following links."""
        self.check_layout()
        delete_entry(self.bundle_path(bundle_id))

    def optimized_path(self, sha256: str) -> Path:
        """Where the optimised graph whose own bytes hash to ``sha256`` is kept (see zoo.hub.optimized)."""
        return self.optimized_dir / f"{_checked(sha256)}.onnx"

    def registry_copy_path(self, location: str) -> Path:
        """Where the last good copy of a ``ZOO_REGISTRY`` URL is kept for offline use."""
        return self.registries_dir / f"{hashlib.sha256(location.encode()).hexdigest()[:24]}.json"

    def _check_dirs(self, *dirs: Path) -> None:
        """Refuse a cache whose own folders are symlinks (or files): they could lead out of ZOO_HOME."""
        for d in dirs:
            chain = [d] if d.parent == self.root else [d.parent, d]
            for p in chain:
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    break
                if not stat.S_ISDIR(st.st_mode):
                    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
                    raise CacheError(
                        f"{p} is {kind}; sparkzoo never follows links inside ZOO_HOME. Remove it (the cache "
                        "recreates its folders) or point ZOO_HOME at the real location"
                    )

    def check_layout(self) -> None:
        """Refuse a cache whose own folders are links or files (reading needs no write access)."""
        self._check_dirs(self.blobs_dir, self.tmp_dir, self.locks_dir, self.quarantine_dir, self.bundles_dir,
                         self.derived_dir, self.optimized_dir)

    def ensure_writable(self) -> None:
        self.check_layout()
        try:
            for d in (self.blobs_dir, self.tmp_dir, self.locks_dir, self.bundles_dir):
                d.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise CacheReadOnlyError(
                f"cache {self.root} is not writable ({exc.strerror}); point ZOO_HOME at a writable directory "
                "or fill this cache from a machine that can write it"
            ) from None
        if not os.access(self.tmp_dir, os.W_OK):
            raise CacheReadOnlyError(f"cache {self.root} is read-only; point ZOO_HOME at a writable directory")

    def lock(self, sha256: str, *, timeout: float, stale: float) -> BlobLock:
        return BlobLock(self.locks_dir / f"{sha256}.lock", timeout=timeout, stale=stale, quarantine=self.quarantine_entry)

    # -- the index -----------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"version": 1, "names": {}, "blobs": {}}
        try:
            data = json.loads(read_regular(self.index_path, INDEX_LIMIT))
        except FileNotFoundError:
            return empty
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("ignoring unreadable cache index %s: %s", self.index_path, exc)
            return empty
        if not isinstance(data, dict) or not isinstance(data.get("names", {}), dict) \
                or not isinstance(data.get("blobs", {}), dict):
            log.warning("ignoring malformed cache index %s", self.index_path)
            return empty
        data.setdefault("names", {})
        data.setdefault("blobs", {})
        return data

    def _update_index(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Read-modify-write the index under a short lock. Losing an update only costs a re-hash."""
        lock = BlobLock(self.locks_dir / "index.lock", timeout=10.0, stale=30.0, poll=0.02,
                        quarantine=self.quarantine_entry)
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
        return {str(k): v for k, v in self.read_index()["names"].items() if isinstance(v, str) and SHA_NAME.match(v)}

    def _record_verified(self, sha256: str, st: os.stat_result) -> None:
        record = _stat_record(st) | {"verified_at": time.time()}
        self._update_index(lambda idx: idx["blobs"].__setitem__(sha256, record))

    # -- blobs -----------------------------------------------------------------------------------
    def shas(self) -> list[str]:
        """sha256 of every entry in ``blobs/`` (verified or not; a planted link too, so verify reports it)."""
        try:
            return sorted(p.name for p in self.blobs_dir.iterdir() if SHA_NAME.match(p.name))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def lookup(self, sha256: str, expected_size: int | None = None) -> Path | None:
        """The blob's path if present and intact, else None.

        A blob whose (size, mtime, inode) match the record made when it was verified is served
        without re-hashing; anything else is re-hashed, and quarantined if it no longer matches.
        A symlink or other non-regular entry is quarantined, never served.
        """
        self._check_dirs(self.blobs_dir)
        path = self.blob_path(sha256)
        try:
            st = lstat_regular(path)
        except UnsafeEntry as exc:
            self.quarantine(sha256, exc.strerror)
            return None
        if st is None:
            return None
        if expected_size is not None and st.st_size != expected_size:
            self.quarantine(sha256, f"size {st.st_size} differs from the registry's {expected_size}")
            return None
        record = self.read_index()["blobs"].get(sha256)
        if isinstance(record, dict) and {k: record.get(k) for k in _STAT_FIELDS} == _stat_record(st):
            return path
        return self.verify_blob(sha256)

    def verify_blob(self, sha256: str, progress: Callable[[int], Any] | None = None) -> Path | None:
        """Re-hash a blob now: its path when intact, None (after quarantining it) when not.

        Raises :class:`ChecksumError` when a bad blob cannot be moved away (a read-only cache)."""
        problem = self.blob_problem(sha256, progress)
        if problem is not None:
            self.quarantine(sha256, problem)
            return None
        return self.blob_path(sha256)

    def blob_problem(self, sha256: str, progress: Callable[[int], Any] | None = None) -> str | None:
        """What is wrong with a blob, re-hashed now (None when intact: its stat record is then renewed)."""
        try:
            fd = open_regular(self.blob_path(sha256))
        except UnsafeEntry as exc:
            return exc.strerror
        try:
            st = os.fstat(fd)
            actual = hash_fd(fd, progress)
        finally:
            os.close(fd)
        if actual != sha256:
            return f"its bytes hash to {actual}"
        self._record_verified(sha256, st)
        return None

    def quarantine(self, sha256: str, reason: str) -> Path:
        """Move a bad blob (or whatever stands at its name) out of the way so it is never served again."""
        try:
            dest = self.quarantine_entry(self.blob_path(sha256), reason)
        except OSError as exc:
            raise ChecksumError(
                f"cached blob {self.blob_path(sha256)} is corrupt ({reason}) and cannot be quarantined "
                f"({exc.strerror}); delete it by hand or run `zoo verify` with write access to the cache"
            ) from None
        self._update_index(lambda idx: idx["blobs"].pop(sha256, None))
        return dest

    def quarantine_entry(self, src: Path, reason: str) -> Path:
        """Move any entry (file, link, folder) into ``quarantine/`` without following it."""
        dest = self.quarantine_dir / f"{src.name}.{time.strftime('%Y%m%dT%H%M%S')}.{token()}"
        self._check_dirs(self.quarantine_dir)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dest)
        except FileNotFoundError:
            return dest
        log.warning("quarantined %s: %s (moved to %s)", src, reason, dest)
        return dest

    def publish(self, slot: DownloadSlot) -> Path:
        """Atomically move a fully downloaded and verified file into place.

        The file is synced and made read-only through the descriptor this process holds; after
        the rename, the entry in ``blobs/`` must be that same file (device and inode), or it is
        quarantined: a path swapped in ``tmp/`` meanwhile is never published.
        """
        sha256 = slot.sha256
        dest = self.blob_path(sha256)
        os.fsync(slot.fd)
        os.fchmod(slot.fd, 0o444)
        mine = os.fstat(slot.fd)
        os.replace(slot.path, dest)
        slot.settled = True
        slot.close()
        try:
            slot.meta_path.unlink(missing_ok=True)
        except OSError:
            pass
        fsync_dir(self.blobs_dir)
        placed = os.lstat(dest)
        if (placed.st_dev, placed.st_ino) != (mine.st_dev, mine.st_ino) or not stat.S_ISREG(placed.st_mode):
            self.quarantine(sha256, "the download's file was swapped for another entry before it was published")
            raise CacheError(
                f"{slot.path} was replaced by another entry while {sha256} was being published; "
                "something else writes into this cache's tmp/ folder. Nothing was published"
            )
        self._record_verified(sha256, placed)
        return dest

    def import_file(self, src: Path, sha256: str) -> Path:
        """Copy a local file (already hashed by the caller) into the cache."""
        self.ensure_writable()
        slot = self.open_slot(sha256)
        try:
            with open(src, "rb", buffering=0) as fh:
                buf = bytearray(HASH_CHUNK)
                offset = 0
                while n := fh.readinto(buf):
                    view = memoryview(buf)[:n]
                    slot.write_at(offset, view)
                    slot.update(view)
                    offset += n
            if slot.hexdigest() != sha256:
                raise ChecksumError(f"{src} changed while it was being imported into the cache")
            return slot.publish()
        finally:
            if not slot.settled:
                slot.discard()

    def import_bytes(self, data: bytes) -> tuple[str, Path]:
        """Store bytes made here (e.g. a cut model) as a blob; returns (sha256, path)."""
        sha = hashlib.sha256(data).hexdigest()
        path = self.lookup(sha, len(data))
        if path is not None:
            return sha, path
        self.ensure_writable()
        slot = self.open_slot(sha)
        try:
            slot.write_at(0, memoryview(data))
            return sha, slot.publish()
        finally:
            if not slot.settled:
                slot.discard()

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

    # -- download slots --------------------------------------------------------------------------
    def open_slot(self, sha256: str) -> DownloadSlot:
        """A new, empty download slot owned by this process (created with O_EXCL, never through a link)."""
        self._check_dirs(self.tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path, meta_path = self._slot_paths(sha256)
        slot = DownloadSlot(self, sha256, path, meta_path, open_regular(path, os.O_RDWR | os.O_CREAT | os.O_EXCL))
        try:
            slot.write_meta()
        except BaseException:
            slot.discard()
            raise
        return slot

    def _orphans(self, stale: float, sha256: str = "") -> Iterator[tuple[Path, Path, dict[str, Any]]]:
        """(part, meta, meta data) of partial downloads whose owner died or stopped working."""
        if not self.tmp_dir.exists():
            return
        self._check_dirs(self.tmp_dir)
        for meta_path in self.tmp_dir.glob(f"{sha256}*.json"):
            part = meta_path.with_suffix(".part")
            try:
                meta = _read_meta(meta_path)
                newest = max(os.lstat(p).st_mtime for p in (part, meta_path) if os.path.lexists(p))
            except UnsafeEntry as exc:
                self.quarantine_entry(meta_path, f"{exc.strerror}: not a record sparkzoo wrote")
                continue
            except (OSError, ValueError, RecursionError):
                continue
            alive = owner_alive(meta["host"], meta["pid"])
            if alive is True and not meta["abandoned"]:
                continue  # a live process on this host still writes it, however slowly
            if meta["abandoned"] or alive is False or time.time() - newest > stale:
                yield part, meta_path, meta

    def resume_slot(self, sha256: str, stale: float) -> DownloadSlot | None:
        """Take over the largest orphaned download slot of this blob, for a Range resume.

        Only a regular file with a single link is adopted; anything else found under a partial's
        name (a symlink, a hard link to a file elsewhere, a FIFO, a folder) is quarantined."""

        def size(part: Path) -> int:
            try:
                return os.lstat(part).st_size
            except OSError:
                return -1

        candidates = sorted(self._orphans(stale, sha256), key=lambda c: size(c[0]), reverse=True)
        for part, meta_path, meta in candidates:
            mine = self._slot_paths(sha256)
            try:
                os.rename(part, mine[0])  # atomic: only one adopter wins (a link is moved, not followed)
            except FileNotFoundError:
                continue
            meta_path.unlink(missing_ok=True)
            try:
                fd = open_regular(mine[0], os.O_RDWR, single_link=True)
            except UnsafeEntry as exc:
                self.quarantine_entry(mine[0], f"{exc.strerror}: not a download sparkzoo made")
                continue
            slot = DownloadSlot(self, sha256, mine[0], mine[1], fd, url=meta["url"], validator=meta["validator"])
            slot.rehash()
            slot.write_meta()
            log.info("resuming partial download of %s (%d bytes from %s)", sha256, slot.size, slot.url)
            return slot
        return None

    def _slot_paths(self, sha256: str) -> tuple[Path, Path]:
        stem = f"{sha256}.{token()}"
        return self.tmp_dir / f"{stem}.part", self.tmp_dir / f"{stem}.json"

    # -- housekeeping ----------------------------------------------------------------------------
    def size(self) -> dict[str, int]:
        """Bytes used by blobs, unfinished downloads, quarantined files and optimised model files."""

        def total(d: Path) -> int:
            if not d.is_dir() or d.is_symlink():
                return 0
            return sum(st.st_size for st in map(os.lstat, d.iterdir()) if stat.S_ISREG(st.st_mode))

        sizes = {"blobs": total(self.blobs_dir), "tmp": total(self.tmp_dir), "quarantine": total(self.quarantine_dir),
                 "optimized": total(self.optimized_dir)}
        sizes["total"] = sum(sizes.values())
        return sizes

    def prune(self, stale: float) -> PruneReport:
        """Delete orphaned download slots, stale locks and quarantined entries (derived files of other
        machines: :func:`zoo.hub.derived.prune`)."""
        temp = locks = quarantined = freed = 0
        for part, meta_path, _ in list(self._orphans(stale)):
            for p in (part, meta_path):
                try:
                    freed += os.lstat(p).st_size
                    p.unlink()
                except FileNotFoundError:
                    continue
            temp += 1
        if self.tmp_dir.exists():  # leftovers without metadata (e.g. crashed atomic writes)
            for p in self.tmp_dir.glob("*.part"):
                st = os.lstat(p)
                if not os.path.lexists(p.with_suffix(".json")) and time.time() - st.st_mtime > stale:
                    freed += st.st_size
                    delete_entry(p)
                    temp += 1
            for p in self.tmp_dir.glob("*.bundle"):  # a bundle whose builder died before placing it (links only)
                if time.time() - os.lstat(p).st_mtime > stale:
                    delete_entry(p)
                    temp += 1
        if self.locks_dir.exists():
            for p in self.locks_dir.glob("*.lock"):
                if is_stale(p, stale):
                    p.unlink(missing_ok=True)
                    locks += 1
        if self.quarantine_dir.exists():
            for p in self.quarantine_dir.iterdir():
                freed += os.lstat(p).st_size
                delete_entry(p)
                quarantined += 1
        return PruneReport(temp, locks, quarantined, freed)


def delete_entry(path: Path) -> None:
    """Delete a file, link or folder without following links."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
