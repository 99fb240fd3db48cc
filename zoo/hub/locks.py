"""A per-blob lock whose only job is to avoid duplicate downloads.

Correctness never depends on it: publishing is an atomic rename of a fully verified file, so two
processes that both download just do redundant work. The lock therefore favours progress:

* it is a file created with ``O_CREAT | O_EXCL`` (works on local disks and NFSv3+, no fcntl),
* it records its owner (host, pid, start time) so waiters can log whom they wait on,
* its owner refreshes its mtime while working (a heartbeat thread),
* a lock whose owner died on this host, or whose heartbeat is older than ``stale`` seconds, is
  broken, and a waiter that has waited ``timeout`` seconds proceeds without it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import CacheReadOnlyError
from zoo.hub.fsutil import HOST, owner_alive, read_regular, token
from zoo.log import get_logger

log = get_logger("lock")


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
    """A lock is stale when its owner died on this host or its heartbeat stopped ``stale`` s ago."""
    owner = read_owner(path)
    if owner is not None and owner_alive(owner.host, owner.pid) is False:
        return True
    try:
        age = time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    return age > stale


class BlobLock:
    """Advisory lock on one blob. Use :meth:`acquire` / :meth:`release` or ``with``."""

    def __init__(self, path: Path, *, timeout: float, stale: float, poll: float = 0.1):
        self.path = path
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
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
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
