"""What the cache makes from verified models, and why it can be trusted: one home for derived files.

A downloaded blob is trusted because a registry pins its sha256. What the cache *makes* from a
verified model has no such pin: a cut model (:mod:`zoo.hub.layer_cuts`), ONNX Runtime's optimised
graph for this machine (:mod:`zoo.hub.optimized`), and the measured layer table a cut is chosen
from. Each of them is a :class:`Derivation`: a kind and the inputs that decide the result (the
source model's sha256, the cut, the machine fingerprint with the ONNX Runtime version, the
builder's version). Its *key* is the sha256 of those inputs written canonically, and its record,
``ZOO_HOME/derived/<key>.json``, holds the inputs in full, the output's sha256 and size (or the
measured value) and a checksum of all of it.

Every use checks, before anything is loaded:

* the record: read without following a link, size-limited, named by the hash of the very inputs
  it holds, those inputs the ones the caller asked for, its checksum right;
* the output file: named and re-hashed by its content (a cut model is a blob, verified like any
  blob; an optimised graph is re-hashed once per process, and again whenever its inode, size or
  ctime change), a regular file with one link where it is never shared, and carrying in its own
  ONNX metadata the key of the derivation that made it (``zoo.derivation``; see
  :func:`zoo.hub.onnx_files.stamps`), so a record pointed at another verified file (the full
  model, another cut) is caught.

Whatever fails is moved to ``quarantine/`` with a warning and built again from the verified
source. ``zoo verify`` goes further and rebuilds each derivation from its source to compare
(:func:`zoo.hub.api.verify`). What the checks on use cannot stop, and ``zoo verify`` does: someone
with write access to the cache who forges a consistent record *and* a file stamped with its key.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from zoo.errors import CacheError
from zoo.hub.cache import SHA_NAME, ModelCache, hash_fd
from zoo.hub.fsutil import UnsafeEntry, atomic_write_bytes, open_regular, read_regular
from zoo.log import get_logger

log = get_logger("derived")

FORMAT = 1
RECORD_LIMIT = 1 << 20  # a record holds inputs and a layer table of at most 16 cuts: far below this
STAMP_KEY = "zoo.derivation"  # the ONNX metadata entry a derived model carries: its derivation's key
KIND_NAMES = {"cuts": "layer table", "cut": "cut model", "optimized": "optimised graph", "locale": "locale copy"}
MAX_OUTPUT_BYTES = 1 << 40  # what a record may say a derived file weighs (the registry's bound)


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class Derivation:
    """One derived file or value: its kind and every input that decides it (JSON values only)."""

    kind: str
    inputs: dict[str, Any]
    label: str = field(default="", compare=False)  # for messages: the model as the user named it

    def __post_init__(self) -> None:  # inputs as they read back from a record (tuples are lists there)
        object.__setattr__(self, "inputs", json.loads(_canonical(self.inputs)))

    @property
    def key(self) -> str:
        """sha256 of the kind and inputs, canonically written: the record's name and the file's stamp."""
        return hashlib.sha256(_canonical({"format": FORMAT, "kind": self.kind, "inputs": self.inputs})).hexdigest()

    def describe(self) -> str:
        source = self.inputs.get("source", "")
        return f"{KIND_NAMES.get(self.kind, self.kind)} of {self.label or source[:12]}"


@dataclass(frozen=True)
class Output:
    """The file a derivation made: its content's sha256 and size."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class Record:
    derivation: Derivation
    output: Output | None = None
    value: Any = None


class Mismatch(Exception):
    """A derived record or file is not what its derivation says it should be (the message says how)."""


def record_path(cache: ModelCache, key: str) -> Path:
    if not SHA_NAME.match(key):
        raise ValueError(f"{key!r:.80} is not a derivation key")
    return cache.derived_dir / f"{key}.json"


def _body(d: Derivation, output: Output | None, value: Any) -> dict[str, Any]:
    return {"format": FORMAT, "kind": d.kind, "key": d.key, "inputs": d.inputs,
            "output": None if output is None else {"sha256": output.sha256, "bytes": output.bytes}, "value": value}


def _parse(data: bytes, expected: Derivation | None, key: str) -> Record:
    """A record's bytes checked field by field (raises :class:`Mismatch` saying what is wrong)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Mismatch(f"not a JSON record ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Mismatch("not a record this version of sparkzoo wrote")
    check = doc.pop("check", None)
    try:
        if check != hashlib.sha256(_canonical(doc)).hexdigest():
            raise Mismatch("its checksum does not match its contents (edited or damaged)")
    except (TypeError, ValueError):
        raise Mismatch("it holds values sparkzoo never writes") from None
    kind, inputs = doc.get("kind"), doc.get("inputs")
    if not isinstance(kind, str) or not isinstance(inputs, dict):
        raise Mismatch("it has no kind or inputs")
    d = Derivation(kind, inputs, expected.label if expected else "")
    if doc.get("key") != key or d.key != key:
        raise Mismatch("its name is not the hash of the inputs it records (copied from another model?)")
    if expected is not None and (d.kind, d.inputs) != (expected.kind, expected.inputs):
        raise Mismatch(f"it records other inputs than {expected.describe()}")
    out = doc.get("output")
    output = None
    if out is not None:
        sha, size = (out.get("sha256"), out.get("bytes")) if isinstance(out, dict) else (None, None)
        if not (isinstance(sha, str) and SHA_NAME.match(sha) and type(size) is int and 0 < size <= MAX_OUTPUT_BYTES):
            raise Mismatch("its output is not a sha256 and a size")
        output = Output(sha, size)
    return Record(d, output, doc.get("value"))


def read(cache: ModelCache, d: Derivation) -> Record | None:
    """The record of ``d`` when there is one and it checks out; a bad one is quarantined (warning).
    A ``derived/`` folder that is a link is refused (:class:`zoo.errors.CacheError`), as for blobs."""
    try:
        cache.check_layout()
    except OSError:  # e.g. ZOO_HOME is a file: there is no record here
        return None
    path = record_path(cache, d.key)
    try:
        data = read_regular(path, RECORD_LIMIT)
    except FileNotFoundError:
        return None
    except UnsafeEntry as exc:
        _quarantine(cache, path, exc.strerror or "not a regular file")
        return None
    except (OSError, ValueError) as exc:  # unreadable, or larger than any record sparkzoo writes
        _quarantine(cache, path, str(exc))
        return None
    try:
        return _parse(data, d, d.key)
    except Mismatch as exc:
        _quarantine(cache, path, f"the record of the {d.describe()}: {exc}; rebuilding it from the verified model")
        return None


def write(cache: ModelCache, d: Derivation, *, output: Output | None = None, value: Any = None) -> None:
    """Record ``d``'s result. A read-only cache only costs a rebuild next time."""
    body = _body(d, output, value)
    body["check"] = hashlib.sha256(_canonical(body)).hexdigest()
    try:
        cache.check_layout()
        atomic_write_bytes(record_path(cache, d.key), json.dumps(body, indent=1).encode())
    except (OSError, CacheError) as exc:  # read-only, or a cache whose folders are links: nothing written
        log.debug("cannot record %s: %s", d.describe(), exc)


def discard(cache: ModelCache, d: Derivation, reason: str) -> None:
    """Quarantine ``d``'s record (its output file is the caller's to quarantine, if it is its own)."""
    _quarantine(cache, record_path(cache, d.key), f"the record of the {d.describe()}: {reason}; rebuilding it "
                "from the verified model")


def _quarantine(cache: ModelCache, path: Path, reason: str) -> None:
    try:
        cache.quarantine_entry(path, reason)
    except OSError as exc:  # a read-only cache: it is never used, only reported
        log.warning("ignoring %s: %s (cannot quarantine it: %s)", path, reason, exc.strerror or exc)


def records(cache: ModelCache) -> Iterator[tuple[Path, Record | str]]:
    """Every record in the cache, checked (the record, or what is wrong with it): for verify and prune."""
    try:
        names = sorted(os.listdir(cache.derived_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        path = cache.derived_dir / name
        key = name[:-5] if name.endswith(".json") else ""
        if not SHA_NAME.match(key):
            if not name.startswith("."):  # a write in progress is ".<name>.<token>.tmp"
                yield path, "not a record sparkzoo writes"
            continue
        try:
            yield path, _parse(read_regular(path, RECORD_LIMIT), None, key)
        except UnsafeEntry as exc:
            yield path, exc.strerror or "not a regular file"
        except (OSError, ValueError) as exc:
            yield path, str(exc)
        except Mismatch as exc:
            yield path, str(exc)


# -- derived files ----------------------------------------------------------------------------------
_VERIFIED: dict[tuple[int, int, int, int, int], str] = {}  # (dev, ino, size, mtime, ctime) -> sha256, this process


def stamp_problem(fd: int, d: Derivation) -> str | None:
    """What is wrong with the stamp of the ONNX file open at ``fd`` (None: it carries ``d``'s key)."""
    from zoo.hub.onnx_files import stamps

    try:
        found = stamps(fd)
    except ValueError as exc:
        return f"it is not an ONNX file sparkzoo made ({exc})"
    if d.key not in found:
        return ("it was not made by this derivation (no stamp)" if not found
                else "it carries the stamp of another derivation")
    return None


def file_problem(fd: int, output: Output, d: Derivation) -> str | None:
    """What is wrong with a derived file open at ``fd`` (None when it is ``d``'s output): its bytes
    hash to the record's sha256 (once per process while its inode, size and times stay) and it
    carries ``d``'s stamp."""
    st = os.fstat(fd)
    if st.st_size != output.bytes:
        return f"it has {st.st_size:,} bytes, its record says {output.bytes:,}"
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    actual = _VERIFIED.get(ident)
    if actual is None:
        actual = hash_fd(fd)
        _VERIFIED[ident] = actual
    if actual != output.sha256:
        return f"its bytes hash to {actual}, its record says {output.sha256}"
    return stamp_problem(fd, d)


@contextmanager
def opened(path: Path, output: Output, d: Derivation, *, single_link: bool) -> Iterator[str]:
    """A path to load the derived file at ``path`` from, once it is checked to be ``d``'s output.

    The file is opened without following links and kept open while the caller loads it; on Linux
    the path handed out is the open descriptor's (``/proc/self/fd/N``), so the bytes loaded are the
    bytes checked even if the name is swapped meanwhile. Raises :class:`Mismatch`, or
    ``FileNotFoundError`` when there is no file."""
    try:
        fd = open_regular(path, single_link=single_link)
    except UnsafeEntry as exc:
        raise Mismatch(exc.strerror or "not a regular file") from None
    try:
        problem = file_problem(fd, output, d)
        if problem is not None:
            raise Mismatch(problem)
        by_fd = f"/proc/self/fd/{fd}"
        yield by_fd if os.path.exists(by_fd) else str(path)
    finally:
        os.close(fd)


def blob_stamp_problem(cache: ModelCache, sha256: str, d: Derivation) -> str | None:
    """What is wrong with the stamp of blob ``sha256`` (already verified by its name) as ``d``'s output."""
    try:
        fd = open_regular(cache.blob_path(sha256))
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        return stamp_problem(fd, d)
    finally:
        os.close(fd)


# -- housekeeping -------------------------------------------------------------------------------------
@dataclass
class Pruned:
    files: int = 0  # optimised graphs of another machine or runtime, or recorded nowhere
    records: int = 0  # records of other machines, of models no longer cached, damaged, or of old versions
    bytes: int = 0


def prune(cache: ModelCache, stale: float) -> Pruned:
    """Delete what no use of this cache can need: records made on another machine (a shared
    ``ZOO_HOME``) or for a model no longer cached, with their optimised files; damaged records;
    optimised files no record names (and builds that died: older than ``stale`` seconds), and the
    unverified records of older sparkzoo versions (``cuts/``)."""
    import time

    from zoo.hub.cache import delete_entry, machine_fingerprint

    out = Pruned()
    cache.check_layout()
    machine = machine_fingerprint()
    present = set(cache.shas())
    kept: set[str] = set()

    def drop(path: Path) -> int:
        try:
            size = os.lstat(path).st_size
        except FileNotFoundError:
            return 0
        delete_entry(path)
        out.bytes += size
        return 1

    for path, rec in list(records(cache)):
        if isinstance(rec, Record) and rec.derivation.inputs.get("machine", machine) == machine \
                and rec.derivation.inputs.get("source") in present:
            if rec.derivation.kind == "optimized" and rec.output is not None:
                kept.add(f"{rec.output.sha256}.onnx")
            continue
        out.records += drop(path)
    now = time.time()
    try:
        leftovers = [cache.optimized_dir / n for n in os.listdir(cache.optimized_dir) if n not in kept]
    except (FileNotFoundError, NotADirectoryError):
        leftovers = []
    for path in leftovers:  # an unrecorded file is never loaded (a build racing this loses one build)
        if path.name.endswith(".tmp") and now - os.lstat(path).st_mtime <= stale:
            continue  # a build in progress
        out.files += drop(path)
    if os.path.lexists(cache.legacy_cuts_dir):
        try:
            out.records += len(os.listdir(cache.legacy_cuts_dir)) if cache.legacy_cuts_dir.is_dir() else 1
        except OSError:
            pass
        delete_entry(cache.legacy_cuts_dir)
    return out


# -- derived blobs: model files stored content-addressed in blobs/ (cut models, locale copies) ---------
def blob(cache: ModelCache, d: Derivation, make: Callable[[], bytes]) -> tuple[str, Path | bytes]:
    """(sha256, path) of ``d``'s output blob: the recorded one when it verifies and carries ``d``'s
    stamp, else ``make()`` (which must stamp it) stored and recorded. A record pointing at another
    blob is quarantined, never the blob itself (it may be a model in its own right). On a cache that
    cannot be written the bytes are returned instead of a path."""
    record = read(cache, d)
    if record is not None and record.output is not None:
        sha = record.output.sha256
        hit = cache.lookup(sha)  # no size here: a record pointing at another blob must not get it quarantined
        if hit is not None:
            problem = blob_stamp_problem(cache, sha, d)
            if problem is None:
                return sha, hit
            discard(cache, d, f"it points at blob {sha[:12]}, which {problem}")
    data = make()
    try:
        sha, path = cache.import_bytes(data)
    except Exception as exc:  # CacheReadOnlyError or an OS error: served from memory
        log.debug("cannot cache the %s: %s", d.describe(), exc)
        return hashlib.sha256(data).hexdigest(), data
    write(cache, d, output=Output(sha, len(data)))
    return sha, path


def verify_blob(cache: ModelCache, record: Record, make: Callable[[], bytes]) -> tuple[str, str | None]:
    """``zoo verify`` of a derived blob: (``ok``, None) when it verifies, carries its stamp and is
    the very bytes ``make()`` gives now; otherwise (``rebuilt``, what was wrong), made again."""
    d = record.derivation
    if record.output is None or cache.lookup(record.output.sha256) is None:
        problem = "is missing or was quarantined"
    else:
        problem = blob_stamp_problem(cache, record.output.sha256, d)
    data = make()
    if problem is None and hashlib.sha256(data).hexdigest() == record.output.sha256:
        return "ok", None
    what = KIND_NAMES.get(d.kind, d.kind)
    problem = problem or "is not what the model makes now"
    discard(cache, d, f"its {what} {problem}")
    sha, _ = cache.import_bytes(data)
    write(cache, d, output=Output(sha, len(data)))
    return "rebuilt", f"the {what} {problem}"


__all__ = ["Pruned", "blob", "prune", "verify_blob", "Derivation", "Mismatch", "Output", "Record", "STAMP_KEY", "blob_stamp_problem", "discard", "file_problem",
           "opened", "read", "record_path", "records", "stamp_problem", "write"]
