"""A per-blob lock whose only job is to avoid duplicate downloads.

Correctness never depends on it: publishing is an atomic rename of a fully verified file, so two
processes that both download just do redundant work. The lock therefore favours progress:

* it is a file created with ``O_CREAT | O_EXCL`` (works on local disks and NFSv3+, no fcntl),
* it records its owner (host, pid, start time) so waiters can log whom they wait on,
* its owner refreshes its mtime while working (a heartbeat thread),
* a lock whose owner died on this host, or whose heartbeat is older than ``stale`` seconds, is
  broken, and a waiter that has waited ``timeout`` seconds proceeds without it;
* a lock sparkzoo cannot have made is never waited on: a symlink, folder, FIFO or file with a second
  hard link planted at its name is quarantined at once, and a file that names no owner
  ``OWNERLESS_GRACE`` seconds after it was made (its maker died between creating and writing it,
  or it was planted) is broken.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from zoo.errors import CacheReadOnlyError
from zoo.hub.fsutil import HOST, owner_alive, read_regular, token
from zoo.log import get_logger

log = get_logger("lock")

OWNERLESS_GRACE = 5.0  # an owner writes its record right after creating the lock: far within this


@dataclass(frozen=True)
class LockOwner:
    host: str
    pid: int
    started: float
    token: str

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"host {self.host} pid {self.pid} since {since}"


def read_owner(path: Path) -> LockOwner | None:
    try:
        data = json.loads(read_regular(path, 4096))
        return LockOwner(str(data["host"]), int(data["pid"]), float(data["started"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def is_stale(path: Path, stale: float) -> bool:
    """A lock is stale when its owner died on this host, its heartbeat stopped ``stale`` s ago, or it
    still names no owner ``OWNERLESS_GRACE`` s after it was made."""
    owner = read_owner(path)
    if owner is not None and owner_alive(owner.host, owner.pid) is False:
        return True
    try:
        age = time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    return age > stale or (owner is None and age > min(stale, OWNERLESS_GRACE))


def unsafe(path: Path) -> str | None:
    """Why the entry at a lock's name cannot be a lock sparkzoo made (None: it can, or it is gone)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink != 1:
        return f"a file with {st.st_nlink} hard links"
    return None


class BlobLock:
    """Advisory lock on one blob. Use :meth:`acquire` / :meth:`release` or ``with``."""

    def __init__(self, path: Path, *, timeout: float, stale: float, poll: float = 0.1,
                 quarantine: Callable[[Path, str], Any] | None = None):
        self.path = path
        self.quarantine = quarantine  # moves a planted entry aside (the cache's quarantine/)
        self.timeout = timeout
        self.stale = stale
        self.poll = poll
        self.held = False
        self._owner = LockOwner(HOST, os.getpid(), time.time(), token())
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> bool:
        """Wait for the lock; True when held, False when the wait timed out (go on without it)."""
        deadline = time.monotonic() + self.timeout
        next_log = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                planted = unsafe(self.path)
                if planted is not None:
                    self._set_aside(planted)
                    continue
            except (PermissionError, OSError) as exc:
                if isinstance(exc, PermissionError) or exc.errno == 30:  # EROFS
                    raise CacheReadOnlyError(f"cannot create lock {self.path}: {exc.strerror}") from None
                raise
            else:
                with os.fdopen(fd, "w") as fh:
                    json.dump(self._owner.__dict__, fh)
                self.held = True
                self._start_heartbeat()
                return True
            if is_stale(self.path, self.stale):
                self._break()
                continue
            now = time.monotonic()
            if now >= deadline:
                owner = read_owner(self.path)
                (log.warning if self.timeout > 0 else log.debug)(
                    "waited %.0f s for %s held by %s; going on without it",
                    self.timeout, self.path.name, owner.describe() if owner else "an unknown owner",
                )
                return False
            if now >= next_log:
                owner = read_owner(self.path)
                log.info("waiting for %s held by %s", self.path.name, owner.describe() if owner else "another process")
                next_log = now + 30.0
            time.sleep(self.poll)

    def _set_aside(self, why: str) -> None:
        """Move a planted entry away from the lock's name, never following it."""
        reason = f"{why} stands where a lock belongs; sparkzoo never waits on or follows one"
        if self.quarantine is not None:
            try:
                self.quarantine(self.path, reason)
                return
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
        grave = self.path.with_name(f"{self.path.name}.planted.{token()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        log.warning("removed %s: %s", self.path, reason)
        if stat.S_ISDIR(os.lstat(grave).st_mode):
            shutil.rmtree(grave, ignore_errors=True)  # never follows the links inside
        else:
            grave.unlink(missing_ok=True)

    def _break(self) -> None:
        """Remove a stale lock. Renaming first means two breakers cannot both delete a fresh lock."""
        owner = read_owner(self.path)
        grave = self.path.with_name(f"{self.path.name}.stale.{token()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        log.warning("broke stale lock %s held by %s", self.path.name, owner.describe() if owner else "an unknown owner")
        grave.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        interval = max(self.stale / 4.0, 0.05)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    os.utime(self.path, follow_symlinks=False)
                except OSError:
                    return

        self._beat = threading.Thread(target=beat, name=f"zoo-lock-{self.path.name}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        owner = read_owner(self.path)
        if owner is not None and owner.token == self._owner.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "BlobLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
