"""Downloading one blob into the cache: mirrors then sources, retries, resume, verification.

The flow for a blob that is not cached (:func:`download`):

1. take the blob's lock (only to avoid duplicate downloads; see :mod:`zoo.hub.locks`), then look
   in the cache again: another process may have finished it meanwhile;
2. resume an orphaned download slot of the blob if one exists, else open a new slot owned by this
   process (:meth:`ModelCache.open_slot`);
3. check free space against the registry's byte count;
4. try each candidate URL in order (``ZOO_MIRRORS`` as ``<mirror>/sha256/<hex>``, then the
   entry's sources); retry transient failures on the same URL with exponential backoff, resuming
   from the bytes already received; enforce the expected size while streaming and hash as it goes;
5. publish a verified file with an atomic rename, or raise one error listing every attempt.
"""

from __future__ import annotations

import errno
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zoo.config import Settings
from zoo.errors import (
    Attempt,
    CacheError,
    ChecksumError,
    DownloadError,
    InsufficientSpaceError,
    InvalidModelError,
)
from zoo.hub import sources
from zoo.hub.cache import DownloadSlot, ModelCache
from zoo.hub.sources import SourceFailure, describe
from zoo.log import get_logger

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
    external_data: frozenset[str] = frozenset()  # the files a graph may name beside it (zoo.hub.bundles)

    def candidate_urls(self, settings: Settings) -> list[str]:
        mirrors = [f"{m}/sha256/{self.sha256}" for m in settings.mirrors]
        return mirrors + [s for s in self.sources if s not in mirrors]


def progress_bar(label: str, total: int | None, initial: int, settings: Settings):
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


def _check_space(cache: ModelCache, target: Target, have: int) -> None:
    """Refuse to start when the download cannot fit: its remaining bytes (or, when the size is not
    known, at least the reserve) plus a reserve must be free."""
    need = max(target.bytes - have, 0) if target.bytes is not None else 0
    free = shutil.disk_usage(cache.tmp_dir).free
    if free < need + SPACE_RESERVE:
        size = f"needs {need:,} bytes plus a {SPACE_RESERVE >> 20} MiB reserve" if target.bytes is not None else (
            f"its size is not known, and less than the {SPACE_RESERVE >> 20} MiB reserve is free")
        raise InsufficientSpaceError(
            f"not enough free space in {cache.tmp_dir} to download {target.label} (sha256 {target.sha256}): "
            f"{size}, {free:,} bytes free. Free some with `zoo cache prune` or `zoo rm NAME`, or point "
            "ZOO_HOME at a larger disk."
        )


def _disk_full(cache: ModelCache, target: Target, slot: DownloadSlot, exc: OSError) -> InsufficientSpaceError:
    need = f"{target.bytes - slot.size:,} more bytes" if target.bytes is not None else "more bytes"
    free = shutil.disk_usage(cache.tmp_dir).free
    return InsufficientSpaceError(
        f"the disk holding {cache.tmp_dir} filled up while downloading {target.label} (sha256 {target.sha256}): "
        f"{exc.strerror}; it needs {need}, {free:,} bytes are free. The {slot.size:,} bytes received are kept "
        f"in {slot.path.name} and the next pull resumes from there; `zoo cache prune` frees them. Free some "
        "space (`zoo cache prune`, `zoo rm NAME`) or point ZOO_HOME at a larger disk."
    )


def _transfer(url: str, slot: DownloadSlot, target: Target, settings: Settings) -> bool:
    """Stream ``url`` into ``slot`` (resuming when it holds bytes from the same URL).

    Returns whether the body continued earlier bytes (a resume): a resumed file that does not
    verify is fetched again from byte 0 before the source is given up."""
    if slot.size and slot.url != url:
        slot.reset()
    resume_from = slot.size
    stream = sources.open_stream(url, settings, offset=resume_from, validator=slot.validator)
    try:
        if stream.offset != resume_from:  # the server sent the whole body (200): start over cleanly
            log.info("%s ignored the resume request; restarting from byte 0", describe(url))
            slot.reset()
        elif resume_from:
            log.info("resuming %s at byte %d from %s", target.label, resume_from, describe(url))
        if target.bytes is not None and stream.total is not None and stream.total != target.bytes:
            raise SourceFailure(
                f"size mismatch: the source has {stream.total:,} bytes, the registry pins {target.bytes:,}",
                transient=False,
            )
        expected = target.bytes if target.bytes is not None else stream.total
        if slot.url != url or slot.validator != stream.validator:
            slot.url, slot.validator = url, stream.validator
            slot.write_meta()
        _copy_body(stream, slot, expected, target, settings)
        return stream.offset > 0
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

    def __init__(self, slot: DownloadSlot, buffers: int = 4):
        self.slot = slot
        self.fd = slot.fd
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
                    self.slot.update(memoryview(buf)[:n])
                    unsynced += n
                    if unsynced >= self.SYNC_EVERY:
                        sync(self.fd)
                        unsynced = 0
            except BaseException as exc:  # surfaced by close()
                self.error = exc
            self.free.put(buf)

    def close(self) -> None:
        """Wait until every chunk handed over is hashed; re-raise a failure of the thread (once)."""
        if self.thread.is_alive():
            self.full.put(None)
            self.thread.join()
        error, self.error = self.error, None
        if error is not None:
            raise error


def _copy_body(stream: sources.Stream, slot: DownloadSlot, expected: int | None, target: Target, settings: Settings) -> None:
    """Copy the body into the slot's file at the bytes already there, hashing as it goes.

    Whatever arrived before a failure (a stall, a reset, a full disk) is written and counted first,
    so the next attempt resumes after it. On a write error the file is cut back to the bytes fully
    written and hashed, so file and hash always agree."""
    bar = progress_bar(target.label, expected, slot.size, settings)
    received = slot.size
    failure: SourceFailure | None = None
    try:
        hasher = _HashWriter(slot)
        try:
            while failure is None:
                buf = hasher.free.get()
                n, error = stream.fill(memoryview(buf))
                if error is not None:  # keep what arrived, then give up on this attempt
                    failure = SourceFailure(f"connection lost after {received + n:,} bytes: {error}", transient=True)
                if expected is not None and received + n > expected:
                    hasher.free.put(buf)
                    raise SourceFailure(f"the source sent more than the expected {expected:,} bytes", transient=False)
                if not n:
                    hasher.free.put(buf)
                    break
                try:
                    slot.write_at(received, memoryview(buf)[:n])
                except OSError:
                    hasher.free.put(buf)
                    raise
                hasher.full.put((buf, n))
                received += n
                bar.update(n)
        except OSError:  # a write failed (a full disk): cut the file back to what is written and hashed
            hasher.close()
            slot.truncate(slot.size)
            raise
        finally:
            hasher.close()
    finally:
        bar.close()
    if failure is not None:
        raise failure
    if expected is not None and received < expected:
        raise SourceFailure(f"connection closed after {received:,} of {expected:,} bytes", transient=True)


def download(target: Target, cache: ModelCache, settings: Settings, *, urls: list[str] | None = None,
             on_source: Callable[[str], None] | None = None) -> Path:
    """Download ``target`` into ``cache`` and return the verified blob path.

    ``urls`` narrows the candidates (e.g. to local mirrors when offline); default: every mirror,
    then the target's sources. ``on_source`` hears the (printable) URL the bytes came from."""
    urls = target.candidate_urls(settings) if urls is None else urls
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
        slot = cache.resume_slot(target.sha256, settings.lock_stale)
        try:
            _check_space(cache, target, slot.size if slot else 0)
            if slot is None:
                slot = cache.open_slot(target.sha256)
            return _try_sources(urls, slot, target, cache, settings, on_source)
        except OSError as exc:  # the cache's disk, not a source: no other source would do better
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) and slot is not None:
                raise _disk_full(cache, target, slot, exc) from None
            raise CacheError(
                f"cannot write the download of {target.label} into {cache.tmp_dir}: {exc.strerror or exc}"
            ) from None
        finally:
            if slot is not None and not slot.settled:  # keep the bytes for a resume
                slot.abandon()
    finally:
        lock.release()


def _try_sources(urls: list[str], slot: DownloadSlot, target: Target, cache: ModelCache, settings: Settings,
                 on_source: Callable[[str], None] | None = None) -> Path:
    attempts: list[Attempt] = []
    # a resumable slot goes first to the URL it came from
    if slot.size and slot.url in urls:
        urls = [slot.url] + [u for u in urls if u != slot.url]
    for url in urls:
        attempt = 0
        while True:
            try:
                resumed = _transfer(url, slot, target, settings)
            except SourceFailure as exc:
                attempts.append(Attempt(describe(url), exc.reason))
                # said once, in the error listing every attempt; as it happens only with -v
                log.info("%s from %s: %s", target.label, describe(url), exc.reason)
                if exc.transient and attempt < settings.retries:
                    time.sleep(sources.backoff_delay(settings, attempt, exc))
                    attempt += 1
                    continue
                break
            digest = slot.hexdigest()
            if digest == target.sha256:
                try:
                    _check_model(slot, target)
                except InvalidModelError:
                    slot.discard()  # the registry's bytes, but unsafe: nothing to keep or resume
                    raise
                path = slot.publish()
                log.info("pulled %s from %s", target.label, describe(url))
                if on_source is not None:
                    on_source(describe(url))
                return path
            slot.reset()
            if resumed:  # the earlier bytes may be what is wrong: fetch the whole file once more from here
                log.warning("%s from %s: the resumed download does not verify; fetching it again from byte 0",
                            target.label, describe(url))
                continue
            reason = f"checksum mismatch: the bytes hash to {digest}, the registry pins {target.sha256}" + _moved(url)
            attempts.append(Attempt(describe(url), reason))
            log.warning("%s from %s: %s", target.label, describe(url), reason)
            break
    tried = "\n".join(f"  - {a}" for a in attempts)
    if attempts and all(a.reason.startswith("checksum mismatch") for a in attempts):
        raise ChecksumError(
            f"could not download {target.label} (sha256 {target.sha256}): every source served bytes that do "
            f"not match the sha256 the registry pins:\n{tried}\nThe network delivered whole files, so the "
            "registry entry or the sources are wrong (or tampered with): check the registry entry's sha256 "
            "and which files the sources and ZOO_MIRRORS serve. Nothing was published.",
            attempts,
        )
    offline = attempts and all(a.reason.startswith(sources.UNRESOLVED) for a in attempts)
    advice = sources.OFFLINE_HINT if offline else (
        "Check the network or proxy settings, set ZOO_MIRRORS to an internal mirror (or ZOO_OFFLINE=1 to use "
        "only the cache), or run `zoo doctor`.")
    raise DownloadError(
        f"could not download {target.label} (sha256 {target.sha256}); every source failed:\n{tried}\n"
        f"{advice} A partial download, if any, is kept and resumed by the next pull.",
        attempts,
    )


def _moved(url: str) -> str:
    """The likely story when a Hub file at a branch or tag stops matching its pin: the revision moved on."""
    if not url.startswith("hf://"):
        return ""
    repo_id, filename, revision = sources.parse_hf(url)
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return ""
    return (f" (revision {revision!r} of {repo_id} is a branch or tag and may have moved since the entry was pinned: "
            f"point the source at the commit that holds the pinned file, hf://{repo_id}/{filename}@<commit>, or run "
            f"`zoo add hf://{repo_id}/{filename}` again to pin what it holds now)")


def _check_model(slot: DownloadSlot, target: Target) -> None:
    """Refuse a verified ONNX file whose tensors point at external data outside its own folder, or at
    files its registry entry does not declare."""
    from zoo.hub.onnx_files import check_external_data_fd

    check_external_data_fd(slot.fd, target.label, target.external_data)
