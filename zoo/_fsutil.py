"""Small file-system helpers shared by the cache, the lock and the registries."""

from __future__ import annotations

import errno
import os
import secrets
import socket
from pathlib import Path

HOST = socket.gethostname()


def token() -> str:
    """A unique suffix for a temporary file owned by this process."""
    return f"{HOST}.{os.getpid()}.{secrets.token_hex(4)}"


def fsync_dir(path: Path) -> None:
    """Make a rename durable; a no-op where directories cannot be opened (Windows, some NFS)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{token()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:  # pragma: no cover - platform specific
        return exc.errno != errno.ESRCH
    return True


def owner_alive(host: str, pid: int) -> bool | None:
    """True/False for a process on this host; None when it ran elsewhere and cannot be checked."""
    if host != HOST:
        return None
    return pid_alive(pid)
