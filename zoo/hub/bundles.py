"""Models made of several files: an ONNX graph whose weights live in external data files.

ONNX keeps tensors outside the graph file when the model exceeds protobuf's 2 GB limit (or when an
exporter chooses to), and finds them by a ``location`` relative to the graph file's folder. The
cache keeps every file as a blob named by its sha256, so ONNX Runtime cannot find them there. A
registry entry declares its files (``external_data``: location -> sha256, size, sources); each is
downloaded and verified like any blob, and the model then runs from a *bundle*::

    $ZOO_HOME/bundles/<bundle id: sha256 of the graph file's and the parts' sha256s>/
      model.onnx          hard link to blobs/sha256/<graph>
      <location>          hard link to blobs/sha256/<part>, one per declared file

A bundle holds hard links (no symlinks: ZOO_HOME is hostile, and links must not lead out of it),
so it costs no space; where the file system refuses hard links the files are copied. A bundle is
built in ``tmp/`` and renamed into place whole, and is checked each time it is used: exactly the
declared entries, each a regular file that is its blob (same inode) or, for a copy, hashes to it.
Anything else is quarantined and the bundle built again. A graph that names a file its entry does
not declare, or a location that leaves its folder, is refused at download (``zoo.hub.onnx_files``).

Cuts of a multi-file model keep their weights where they are: the cut graph refers to the same
external files and runs from its own bundle, so a cut of a 10 GB model costs kilobytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from zoo.errors import CacheError, CacheReadOnlyError, ChecksumError, InvalidModelError
from zoo.hub.cache import ModelCache, hash_file
from zoo.hub.fsutil import UnsafeEntry, fsync_dir, lstat_regular, token
from zoo.log import get_logger

log = get_logger("bundles")

MODEL_FILE = "model.onnx"
LOCATION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}$")  # a plain file name: no folder, no "..", no dot file


@dataclass(frozen=True)
class Part:
    """One external data file of a model: where the graph looks for it, and its pinned bytes."""

    location: str
    sha256: str
    bytes: int | None
    sources: tuple[str, ...]

    def as_file(self) -> dict[str, Any]:
        """The registry's ``pinned_file`` form."""
        out: dict[str, Any] = {"sha256": self.sha256, "sources": list(self.sources)}
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


def check_location(location: str, model: str) -> str:
    """A declared external-data location must be a plain file name beside the graph file."""
    if not LOCATION.match(location) or location == MODEL_FILE:
        raise InvalidModelError(
            f"model {model!r}: external data location {location!r} is not a plain file name beside the model "
            f"(letters, digits, '_', '.', '+', '-'; not {MODEL_FILE!r}); sparkzoo keeps such files flat"
        )
    return location


def parts_of(external_data: Mapping[str, Mapping[str, Any]] | None, model: str) -> tuple[Part, ...]:
    """A registry entry's ``external_data`` as parts, sorted by location."""
    return tuple(
        Part(check_location(loc, model), f["sha256"], f.get("bytes"), tuple(f.get("sources", ())))
        for loc, f in sorted((external_data or {}).items())
    )


def digest(parts: Iterable[Part]) -> str | None:
    """One sha256 for a set of weight files (location and content); None when there are none."""
    pinned = sorted((p.location, p.sha256) for p in parts)
    if not pinned:
        return None
    return hashlib.sha256(json.dumps(pinned, separators=(",", ":")).encode()).hexdigest()


def bundle_id(sha256: str, parts: Iterable[Part]) -> str:
    """The name of a model's bundle: its graph file's sha256 and its weight files' together, so two
    checkpoints that share one graph file (exported the same way) never share a bundle."""
    return hashlib.sha256(json.dumps([sha256, digest(parts)], separators=(",", ":")).encode()).hexdigest()


def used_by(parts: Iterable[Part], locations: Iterable[str]) -> tuple[Part, ...]:
    """The parts a graph refers to (a cut needs only the files of the weights it keeps)."""
    wanted = set(locations)
    return tuple(p for p in parts if p.location in wanted)


def fetch_parts(cache: ModelCache, parts: Iterable[Part], label: str, settings) -> None:
    """Every part in the cache, verified (downloaded when missing; offline: local routes only)."""
    from zoo.hub.sidecars import fetch

    for p in parts:
        fetch({"sha256": p.sha256, "bytes": p.bytes, "sources": p.sources}, f"{label} external data {p.location!r}",
              settings)


# -- bundles in the cache ---------------------------------------------------------------------------
def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:  # a file system without hard links (some network and FUSE mounts): copy
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o444)


def _problem(folder: Path, wanted: Mapping[str, Path]) -> str | None:
    """What is wrong with an existing bundle folder (None when it is exactly the wanted files)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder" if not stat.S_ISLNK(st.st_mode) else "a symbolic link"
    names = set(os.listdir(folder))
    if names != set(wanted):
        return f"holds {sorted(names ^ set(wanted))} it should not (or lacks them)"
    for name, blob in wanted.items():
        try:
            mine = lstat_regular(folder / name)
        except UnsafeEntry as exc:
            return f"{name}: {exc.strerror}"
        theirs = os.stat(blob)
        if mine is None:
            return f"{name} is missing"
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino) and (
                mine.st_size != theirs.st_size or hash_file(folder / name) != blob.name):
            return f"{name} is not the verified file {blob.name[:12]}"
    return None


def assemble(cache: ModelCache, sha256: str, parts: Iterable[Part], label: str) -> Path:
    """The graph file of model ``sha256`` inside its bundle, which is built (or rebuilt) when needed.

    The blobs must be in the cache already (see :func:`fetch_parts`)."""
    parts = tuple(parts)
    cache.check_layout()
    wanted: dict[str, Path] = {}
    for name, sha, size in [(MODEL_FILE, sha256, None), *((p.location, p.sha256, p.bytes) for p in parts)]:
        blob = cache.lookup(sha, size)
        if blob is None:
            raise ChecksumError(f"{label}: {name} (sha256 {sha}) is not in the cache {cache.root}; pull the model again")
        wanted[name] = blob
    folder = cache.bundle_path(bundle_id(sha256, parts))
    problem = _problem(folder, wanted)
    if problem is None:
        return folder / MODEL_FILE
    cache.ensure_writable()
    if problem != "missing":
        cache.quarantine_entry(folder, f"bundle {problem}")
    build = cache.tmp_dir / f"{sha256}.{token()}.bundle"
    build.mkdir(mode=0o755)
    try:
        for name, blob in wanted.items():
            _link_or_copy(blob, build / name)
        fsync_dir(build)
        try:
            os.rename(build, folder)
        except OSError:  # another process placed it first: use theirs if it is right
            if _problem(folder, wanted) is not None:
                raise CacheError(f"{label}: could not place the bundle {folder}; another process keeps writing it") from None
        fsync_dir(folder.parent)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    log.debug("bundled %s with %d external data files in %s", sha256[:12], len(wanted) - 1, folder)
    return folder / MODEL_FILE


@contextlib.contextmanager
def scratch(graph_bytes: bytes, beside: Path, locations: Iterable[str]) -> Iterator[Path]:
    """A private folder holding ``graph_bytes`` as a model file and links to its external data files
    (found beside ``beside``), for ONNX Runtime on a graph made in memory (the layer analysis probe),
    which reads external data only beside a file path. Removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="zoo-graph-"))
    try:
        for location in set(locations):
            src = beside.parent / location
            try:
                os.link(src, folder / location)
            except OSError:  # another file system: a link in our own private folder
                os.symlink(src.resolve(), folder / location)
        path = folder / MODEL_FILE
        path.write_bytes(graph_bytes)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def runnable(cache: ModelCache, sha256: str, graph: Path | bytes, parts: Iterable[Part], label: str,
             get_part: Callable[[Part], Any]) -> Path | bytes:
    """What ONNX Runtime loads for model ``sha256`` whose graph file is ``graph``: the graph itself when
    it names no external file, else its bundle with the parts it names (``get_part`` brings a missing
    one into the cache: a download, the driver's shipped copy, the file beside a local model)."""
    parts = tuple(parts)
    if not parts:
        return graph
    if isinstance(graph, bytes):
        raise CacheReadOnlyError(
            f"{label} keeps its weights in external data files, which run only from a bundle in a writable cache; "
            f"{cache.root} is not writable: point ZOO_HOME at a writable directory"
        )
    from zoo.hub.onnx_files import external_locations

    used = used_by(parts, external_locations(graph))
    if not used:
        return graph
    for p in used:
        if cache.lookup(p.sha256, p.bytes) is None:
            get_part(p)
    return assemble(cache, sha256, used, label)


def adopt_beside(cache: ModelCache, model_path: Path) -> Callable[[Part], Any]:
    """``get_part`` for a model file used in place: import the file beside it (verified) into the cache."""
    return lambda p: cache.import_file(model_path.parent / p.location, p.sha256)


def file_parts(path: Path, locations: Iterable[str]) -> tuple[Part, ...]:
    """The parts of a model file used in place: the external data files beside it, hashed now."""
    out = []
    for location in sorted(set(locations)):
        f = path.parent / check_location(location, str(path))
        if not f.is_file():
            raise InvalidModelError(f"{path}: external data file {location!r} is missing beside it")
        out.append(Part(location, hash_file(f), f.stat().st_size, (f.resolve().as_uri(),)))
    return tuple(out)


def total_bytes(entry_bytes: int, parts: Iterable[Part]) -> int:
    """A model's size on disk with its external data."""
    return entry_bytes + sum(p.bytes or 0 for p in parts)


__all__ = ["MODEL_FILE", "Part", "adopt_beside", "assemble", "bundle_id", "check_location", "digest", "fetch_parts",
           "file_parts", "parts_of", "runnable", "scratch", "total_bytes", "used_by"]

