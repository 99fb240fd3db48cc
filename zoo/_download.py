"""Fetching one blob into the cache: mirrors then sources, retries, resume, verification.

The flow for a blob that is not cached:

1. take the blob's lock (only to avoid duplicate downloads; see :mod:`zoo._lock`), then look
   in the cache again: another process may have finished it meanwhile;
2. adopt an orphaned partial download of the blob if one exists (resume), else start a new
   temporary file owned by this process;
3. check free space against the registry's byte count;
4. try each candidate URL in order (``ZOO_MIRRORS`` as ``<mirror>/sha256/<hex>``, then the
   entry's sources); retry transient failures on the same URL with exponential backoff, resuming
   from the bytes already received; enforce the expected size while streaming and hash as it goes;
5. publish a verified file with an atomic rename, or raise one error listing every attempt.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from zoo import _sources
from zoo._logging import get_logger
from zoo._sources import SourceFailure, describe
from zoo.cache import Cache, Partial
from zoo.config import Settings
from zoo.errors import Attempt, ChecksumError, DownloadError, InsufficientSpaceError

log = get_logger("download")

CHUNK = 1 << 20
SPACE_RESERVE = 16 << 20


@dataclass(frozen=True)
class Target:
    """What to fetch: the pinned sha256, its size when known, and the upstream sources."""

    sha256: str
    bytes: int | None
    sources: tuple[str, ...]
    label: str

    def candidate_urls(self, settings: Settings) -> list[str]:
        mirrors = [f"{m}/sha256/{self.sha256}" for m in settings.mirrors]
        return mirrors + [s for s in self.sources if s not in mirrors]


def _progress_bar(label: str, total: int | None, initial: int, settings: Settings):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=None if settings.progress is None else not settings.progress,
        leave=False,
    )


def _check_space(cache: Cache, target: Target, have: int) -> None:
    if target.bytes is None:
        return
    need = target.bytes - have
    free = shutil.disk_usage(cache.tmp_dir).free
    if free < need + SPACE_RESERVE:
        raise InsufficientSpaceError(
            f"not enough free space in {cache.root} to download {target.label} (sha256 {target.sha256}): "
            f"needs {need:,} bytes plus a {SPACE_RESERVE >> 20} MiB reserve, {free:,} bytes free. "
            "Free some with `zoo cache prune` or `zoo rm NAME`, or point ZOO_HOME at a larger disk."
        )


def _transfer(url: str, partial: Partial, target: Target, settings: Settings) -> None:
    """Stream ``url`` into ``partial`` (resuming when it holds bytes from the same URL)."""
    if partial.size and partial.url != url:
        partial.reset()
    resume_from = partial.size
    stream = _sources.open_stream(url, settings, offset=resume_from, validator=partial.validator)
    try:
        if stream.offset != resume_from:  # the server sent the whole body (200): start over cleanly
            log.info("%s ignored the resume request; restarting from byte 0", describe(url))
            partial.reset()
        elif resume_from:
            log.info("resuming %s at byte %d from %s", target.label, resume_from, describe(url))
        if target.bytes is not None and stream.total is not None and stream.total != target.bytes:
            raise SourceFailure(
                f"size mismatch: the source has {stream.total:,} bytes, the registry pins {target.bytes:,}",
                transient=False,
            )
        expected = target.bytes if target.bytes is not None else stream.total
        if partial.url != url or partial.validator != stream.validator:
            partial.url, partial.validator = url, stream.validator
            partial.write_meta()
        _copy_body(stream, partial, expected, target, settings)
    finally:
        stream.close()


class _HashWriter:
    """Hashes written chunks on a second thread, and flushes them to disk as it goes.

    sha256 runs at about the speed of a loopback transfer, so hashing inline would halve
    throughput; hashlib releases the GIL on large updates, so a second thread overlaps it with the
    next read. It also calls fdatasync every ``SYNC_EVERY`` bytes so that the fsync before
    publishing finds little left to write.
    """

    SYNC_EVERY = 32 << 20

    def __init__(self, partial: Partial, fd: int, buffers: int = 4):
        self.partial = partial
        self.fd = fd
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(bytearray(CHUNK))
        self.full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="zoo-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        unsynced = 0
        sync = getattr(os, "fdatasync", os.fsync)
        while (item := self.full.get()) is not None:
            buf, n = item
            try:
                if self.error is None:
                    self.partial.update(memoryview(buf)[:n])
                    unsynced += n
                    if unsynced >= self.SYNC_EVERY:
                        sync(self.fd)
                        unsynced = 0
            except BaseException as exc:  # surfaced by close()
                self.error = exc
            self.free.put(buf)

    def close(self) -> None:
        """Wait until every chunk handed over is hashed; re-raise a failure of the thread."""
        self.full.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _copy_body(stream: _sources.Stream, partial: Partial, expected: int | None, target: Target, settings: Settings) -> None:
    bar = _progress_bar(target.label, expected, partial.size, settings)
    received = partial.size
    try:
        with open(partial.path, "r+b", buffering=0) as out:
            out.seek(partial.size)
            hasher = _HashWriter(partial, out.fileno())
            try:
                while True:
                    buf = hasher.free.get()
                    try:
                        n = stream.readinto(memoryview(buf))
                    except (OSError, ValueError) as exc:  # reset, timeout, closed socket
                        hasher.free.put(buf)
                        raise SourceFailure(f"connection lost after {received:,} bytes: {exc}", transient=True) from None
                    if not n:
                        hasher.free.put(buf)
                        break
                    if expected is not None and received + n > expected:
                        hasher.free.put(buf)
                        raise SourceFailure(f"the source sent more than the expected {expected:,} bytes", transient=False)
                    out.write(memoryview(buf)[:n])
                    hasher.full.put((buf, n))
                    received += n
                    bar.update(n)
            finally:
                hasher.close()
    finally:
        bar.close()
    if expected is not None and received < expected:
        raise SourceFailure(f"connection closed after {received:,} of {expected:,} bytes", transient=True)


def fetch(target: Target, cache: Cache, settings: Settings) -> Path:
    """Download ``target`` into ``cache`` and return the verified blob path."""
    urls = target.candidate_urls(settings)
    if not urls:
        raise DownloadError(
            f"{target.label} (sha256 {target.sha256}) has no sources: no registry entry names it and "
            "ZOO_MIRRORS is empty"
        )
    cache.ensure_writable()
    lock = cache.lock(target.sha256, timeout=settings.lock_timeout, stale=settings.lock_stale)
    lock.acquire()
    try:
        hit = cache.lookup(target.sha256, target.bytes)
        if hit is not None:
            log.info("%s was downloaded by another process meanwhile", target.label)
            return hit
        partial = cache.adopt_partial(target.sha256, settings.lock_stale)
        _check_space(cache, target, partial.size if partial else 0)
        if partial is None:
            partial = cache.new_partial(target.sha256)
        try:
            return _try_sources(urls, partial, target, cache, settings)
        finally:
            if partial.path.exists():  # not published: keep the bytes for a resume
                partial.abandon()
    finally:
        lock.release()


def _try_sources(urls: list[str], partial: Partial, target: Target, cache: Cache, settings: Settings) -> Path:
    attempts: list[Attempt] = []
    # a resumable partial goes first to the URL it came from
    if partial.size and partial.url in urls:
        urls = [partial.url] + [u for u in urls if u != partial.url]
    for url in urls:
        for attempt in range(settings.retries + 1):
            try:
                _transfer(url, partial, target, settings)
            except SourceFailure as exc:
                attempts.append(Attempt(describe(url), exc.reason))
                log.warning("%s from %s: %s", target.label, describe(url), exc.reason)
                if exc.transient and attempt < settings.retries:
                    time.sleep(_sources.backoff_delay(settings, attempt))
                    continue
                break
            digest = partial.hexdigest()
            if digest == target.sha256:
                path = cache.publish(partial, target.sha256)
                log.info("pulled %s from %s", target.label, describe(url))
                return path
            reason = f"checksum mismatch: the bytes hash to {digest}, the registry pins {target.sha256}"
            attempts.append(Attempt(describe(url), reason))
            log.warning("%s from %s: %s", target.label, describe(url), reason)
            partial.reset()
            break
    tried = "\n".join(f"  - {a}" for a in attempts)
    only_checksums = attempts and all(a.reason.startswith("checksum mismatch") for a in attempts)
    cls = ChecksumError if only_checksums else DownloadError
    raise cls(
        f"could not download {target.label} (sha256 {target.sha256}); every source failed:\n{tried}\n"
        "Check the network or proxy settings, set ZOO_MIRRORS to an internal mirror, or run "
        "`zoo doctor`. A partial download, if any, is kept and resumed by the next pull.",
        attempts,
    )
