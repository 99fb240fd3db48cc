"""Small file-system helpers shared by the cache, the locks and the registries: writes that are atomic,
and reads that never follow a link or block on a planted FIFO (everything under ZOO_HOME is hostile)."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
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
        with os.fdopen(open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as fh:
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


class UnsafeEntry(OSError):
    """A cache path that is a symlink, a hard link, or not a regular file: never written through or served."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644, *, single_link: bool = False) -> int:
    """``os.open`` that never follows a link and only accepts a regular file.

    The last path component is opened with ``O_NOFOLLOW`` (a planted symlink fails with ELOOP),
    reads use ``O_NONBLOCK`` so a planted FIFO cannot hang the caller, and what was opened is
    checked with ``fstat``: a directory, device, FIFO or socket (or, with ``single_link``, a file
    with a second hard link that could live outside the cache) raises :class:`UnsafeEntry`.
    """
    extra = _NOFOLLOW | _CLOEXEC | (os.O_NONBLOCK if flags & os.O_ACCMODE == os.O_RDONLY else 0)
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and _NOFOLLOW):
            raise UnsafeEntry(exc.errno, f"{path} is a symbolic link") from None
        raise
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif single_link and st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links"
    if problem:
        os.close(fd)
        raise UnsafeEntry(errno.EPERM, f"{path} {problem}")
    if extra & os.O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a small regular file (no links, no FIFOs), refusing one larger than ``limit``."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit:,} bytes")
    return data


def lstat_regular(path: Path) -> os.stat_result | None:
    """``lstat`` of a path if it is a regular file; None if absent; :class:`UnsafeEntry` if it is anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise UnsafeEntry(errno.EPERM, f"{path} is {kind}")
    return st


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` (written beside ``target``, same file system) in ``target``'s place:
    the previous ``target`` is renamed aside to ``.NAME.zoo-old-*`` and removed once ``new`` is in.
    A process that dies between the two renames leaves the previous folder under that name, which
    ``zoo.incremental`` puts back on its next run; a reader never sees a half-written folder."""
    import shutil
    import uuid

    if target.exists():
        grave = target.parent / f".{target.name}.zoo-old-{uuid.uuid4().hex[:12]}"
        os.rename(target, grave)
        os.rename(new, target)
        shutil.rmtree(grave, ignore_errors=True)
    else:
        os.rename(new, target)
