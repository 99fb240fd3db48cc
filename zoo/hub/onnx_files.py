"""Reading what sparkzoo needs from an ONNX file, and refusing files that reach outside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from zoo.errors import ExternalDataError, InvalidModelError, ModelNotFoundError

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def model_file(path: Path) -> Path:
    """``path`` resolved, when it is a file that can hold a model; otherwise an error that says what
    is there: nothing (:class:`ModelNotFoundError`, exit 4), or a directory, a FIFO, a device, an
    empty file (:class:`InvalidModelError`, exit 9). Nothing is opened: a FIFO or ``/dev/zero`` is
    never read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelNotFoundError(f"no such model file {path}") from None
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise InvalidModelError(f"{path} is {kind}, not an ONNX model file")
    if st.st_size == 0:
        raise InvalidModelError(f"{path} is an empty file (0 bytes), not an ONNX model")
    return Path(path).resolve()


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
        raise InvalidModelError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from None


def external_references(model) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor stored outside the file, wherever it sits in the graph.

    sparkzoo walks the model itself (initializers, sparse initializers, tensor attributes of every
    node, and every subgraph of If/Loop/Scan nodes and functions) rather than trusting a helper of
    whichever onnx version is installed."""
    from onnx import AttributeProto, TensorProto

    found: list[tuple[str, str]] = []

    def tensor(t) -> None:
        if t.data_location == TensorProto.EXTERNAL:
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            found.append((t.name or "(unnamed tensor)", location))

    def sparse(st) -> None:
        tensor(st.values)
        tensor(st.indices)

    def graph(g) -> None:
        for t in g.initializer:
            tensor(t)
        for st in g.sparse_initializer:
            sparse(st)
        nodes(g.node)

    def nodes(node_list) -> None:
        for node in node_list:
            for attr in node.attribute:
                if attr.type == AttributeProto.TENSOR:
                    tensor(attr.t)
                elif attr.type == AttributeProto.TENSORS:
                    for t in attr.tensors:
                        tensor(t)
                elif attr.type == AttributeProto.SPARSE_TENSOR:
                    sparse(attr.sparse_tensor)
                elif attr.type == AttributeProto.SPARSE_TENSORS:
                    for st in attr.sparse_tensors:
                        sparse(st)
                elif attr.type == AttributeProto.GRAPH:
                    graph(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        graph(g)

    graph(model.graph)
    for function in model.functions:
        nodes(function.node)
    return found


def external_locations(path: Path) -> list[str]:
    """The external data files the graph at ``path`` names (its data is not read)."""
    return sorted({location for _, location in external_references(_load(path))})


def _escapes(location: str, base: Path) -> bool:
    posix = PurePosixPath(location.replace("\\", "/"))
    return (
        not location
        or "\0" in location
        or posix.is_absolute()
        or PureWindowsPath(location).is_absolute()
        or bool(PureWindowsPath(location).drive)
        or ".." in posix.parts
        or not (base / location).resolve().is_relative_to(base)
    )


def check_external_data(path: Path, model=None, *, label: str | None = None) -> list[str]:
    """Raise :class:`ExternalDataError` if an external-data reference leaves the model's directory.

    Returns the (safe) external locations; callers that keep single-file blobs refuse any."""
    model = model if model is not None else _load(path)
    base = path.parent.resolve()
    refs = external_references(model)
    for name, location in refs:
        if _escapes(location, base):
            raise ExternalDataError(
                f"{label or path}: tensor {name!r} keeps its data at external location {location!r}, which points "
                f"outside the model's directory {base}; sparkzoo refuses such a model whatever onnx and ONNX "
                "Runtime would do with it"
            )
    return [location for _, location in refs]


def check_external_data_fd(fd: int, label: str, declared: frozenset[str] = frozenset()) -> None:
    """The external-data check for a downloaded file, read through the descriptor that wrote it.

    A graph may name external files only when its registry entry declares them (``declared``:
    ``external_data`` locations; see :mod:`zoo.hub.bundles`): one that escapes its folder names the
    tensor and location, one that is not declared says so, and nothing is published.
    A file that does not parse as ONNX is left to the loader, which reports it when it is used.

    First a byte scan: an external reference is a ``key: "location"`` entry, and protobuf stores
    strings verbatim, so a file without the bytes ``location`` has none, and the (slow to import)
    onnx parser is only needed for files that contain them."""
    import mmap

    if os.fstat(fd).st_size == 0:
        return
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
        if view.find(b"location") < 0:
            return
        data = view[:]
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # not ONNX (or not one this onnx reads): nothing in it can point outside it
        return
    del data
    refs = external_references(model)
    for name, location in refs:
        if _escapes(location, Path("/nonexistent-zoo-blob-folder")):
            raise ExternalDataError(
                f"{label}: tensor {name!r} keeps its data at external location {location!r}, outside the model's "
                "own folder; the download is refused and nothing was published"
            )
    undeclared = [(name, location) for name, location in refs if location not in declared]
    if undeclared:
        name, location = undeclared[0]
        raise ExternalDataError(
            f"{label}: tensor {name!r} keeps its data in an external file {location!r} that the registry entry "
            "does not declare (its `external_data` pins each such file by sha256), so the download is refused. "
            "Declare the file (`zoo add` does it for a local model), or re-save the model without external data."
        )


def _dims(value_info) -> list[Any]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dims


def describe_model(path: Path) -> dict[str, Any]:
    """The registry ``input``/``output``/``opset`` fields of an ONNX model (its external data is not read)."""
    model = _load(path)
    check_external_data(path, model)  # weights beside it are fine (zoo.hub.bundles); elsewhere refused
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise InvalidModelError(f"{path} has no graph inputs")
    first = inputs[0]
    shape = _dims(first)
    elem = first.type.tensor_type.elem_type
    layout = "NHWC" if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
    out: dict[str, Any] = {
        "input": {"name": first.name, "layout": layout, "shape": shape, "dtype": _DTYPES.get(elem, "float32")},
    }
    if model.graph.output:
        o = model.graph.output[0]
        out["output"] = {"name": o.name, "shape": _dims(o)}
    opsets = [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")]
    if opsets:
        out["opset"] = opsets[0]
    return out


def graph_outputs(path: Path) -> list[tuple[str, list[Any]]]:
    """(name, shape) of every output of an ONNX model, in the graph's order (external data not read)."""
    return [(o.name, _dims(o)) for o in _load(path).graph.output]


# -- stamps: the derivation key a model sparkzoo made carries in its metadata -----------------------
_METADATA_FIELD = 14  # ModelProto.metadata_props: repeated StringStringEntryProto (key = 1, value = 2)
_MAX_TOP_FIELDS = 1 << 16  # a ModelProto has a dozen top-level fields, plus one per metadata entry
_MAX_ENTRY = 4096  # a stamp entry is ~90 bytes; larger metadata entries are skipped unread


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("a truncated or overlong varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string_fields(data: bytes) -> dict[int, str]:
    """Fields 1 and 2 of a small message of strings (a metadata entry)."""
    out: dict[int, str] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        if tag & 7 != 2:
            raise ValueError("a metadata entry that is not two strings")
        size, pos = _varint(data, pos)
        if pos + size > len(data):
            raise ValueError("a metadata entry longer than its field")
        out[tag >> 3] = data[pos:pos + size].decode("utf-8", "replace")
        pos += size
    return out


def stamp_entry(key: str, value: str) -> bytes:
    """One ``metadata_props`` entry, serialised as a top-level field of a ModelProto: appended to a
    model file it adds the entry (protobuf merges a repeated field's occurrences), so a file that
    ONNX Runtime wrote can be stamped without parsing and re-writing it."""
    entry = b"".join(bytes([(field << 3) | 2]) + _encode_varint(len(text)) + text
                     for field, text in ((1, key.encode()), (2, value.encode())))
    return bytes([(_METADATA_FIELD << 3) | 2]) + _encode_varint(len(entry)) + entry


def stamps(fd: int, key: str = "zoo.derivation") -> set[str]:
    """Every value of metadata entry ``key`` in the ONNX file open at ``fd``, read cheaply: the
    top-level fields are walked with ``pread`` and the graph (the bulk of the file) is skipped
    unread. Bounded for a hostile file; raises ``ValueError`` for one that is not a protobuf."""
    size = os.fstat(fd).st_size
    pos, found, fields = 0, set(), 0
    while pos < size:
        fields += 1
        if fields > _MAX_TOP_FIELDS:
            raise ValueError("too many top-level fields for an ONNX model")
        head = os.pread(fd, 20, pos)
        tag, used = _varint(head, 0)
        wire, number = tag & 7, tag >> 3
        if wire == 0:
            _, used = _varint(head, used)
            pos += used
        elif wire == 1:
            pos += used + 8
        elif wire == 5:
            pos += used + 4
        elif wire == 2:
            length, used = _varint(head, used)
            start = pos + used
            if number == _METADATA_FIELD and length <= _MAX_ENTRY:
                entry = _string_fields(os.pread(fd, length, start))
                if entry.get(1) == key and 2 in entry:
                    found.add(entry[2])
            pos = start + length
        else:
            raise ValueError(f"wire type {wire} at byte {pos} is not in an ONNX model")
        if number == 0 or pos > size:
            raise ValueError("not a protobuf message (truncated, or field 0)")
    return found


# -- text models: the locale ONNX Runtime's StringNormalizer asks for ---------------------------------
DEFAULT_STRING_LOCALE = "en_US.UTF-8"  # what ONNX Runtime uses when a StringNormalizer names none (Linux)


def mentions(path: Path, needle: bytes) -> bool:
    """Whether the bytes ``needle`` occur in the file (a cheap test before parsing a model: protobuf
    keeps op types and names verbatim, so a model without the bytes has no such node)."""
    import mmap

    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return view.find(needle) >= 0


def all_nodes(model):
    """Every node of ``model``: its graph's, every subgraph's (If/Loop/Scan) and every function's."""
    stack = [list(model.graph.node), *(list(f.node) for f in model.functions)]
    while stack:
        for node in stack.pop():
            yield node
            for attr in node.attribute:
                stack.extend(list(g.node) for g in [attr.g, *attr.graphs] if g.node)


def string_normalizers(model) -> list[tuple[str, str]]:
    """(node name, locale it asks for) of every ``StringNormalizer`` in ``model``, subgraphs and
    functions included (a converted scikit-learn text pipeline has one)."""
    return [(node.name or "(unnamed StringNormalizer)",
             next((a.s.decode("utf-8", "replace") for a in node.attribute if a.name == "locale"), "")
             or DEFAULT_STRING_LOCALE)
            for node in all_nodes(model) if node.op_type == "StringNormalizer"]


def locale_available(name: str) -> bool | None:
    """Whether the C library can build locale ``name`` here, as ONNX Runtime's ``std::locale`` will
    (glibc's ``newlocale``: thread-safe, nothing global changes); None where that cannot be asked."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        newlocale, freelocale = libc.newlocale, libc.freelocale
    except (OSError, AttributeError):
        return None
    newlocale.restype, newlocale.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
    freelocale.argtypes = [ctypes.c_void_p]
    handle = newlocale(0x1FBF, name.encode(), None)  # LC_ALL_MASK on glibc
    if not handle:
        return False
    freelocale(handle)
    return True


def installed_locales() -> list[str]:
    """The locales this machine has (``locale -a``), or an empty list when it cannot say."""
    import subprocess

    try:
        done = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line.strip() for line in done.stdout.splitlines() if line.strip())[:200]


def locale_problem(model, label: str) -> str | None:
    """A message naming each StringNormalizer whose locale this machine lacks, the locales it has,
    and the fixes; None when every locale the model asks for is here (or none is asked for)."""
    missing = [(node, wanted) for node, wanted in string_normalizers(model) if locale_available(wanted) is False]
    if not missing:
        return None
    nodes = ", ".join(f"{node!r} asks for {wanted!r}" for node, wanted in missing[:5])
    have = installed_locales()
    utf8 = next((n for n in have if n.lower().replace("-", "") in ("c.utf8", "en_us.utf8")), "C.UTF-8")
    return (f"model {label}: its StringNormalizer node {nodes}, a locale this machine does not have (it has "
            f"{', '.join(have) or 'no list available'}); ONNX Runtime cannot run the model here. Either install the "
            f"locale on every node (e.g. `locale-gen {missing[0][1]}`), convert the model with the locale you have "
            f"(skl2onnx: options={{TfidfVectorizer: {{'locale': '{utf8}'}}}}), or let sparkzoo run a copy with "
            f"the locale rewritten: onnx_model(..., stringLocale='{utf8}')")


def with_locale(model, locale: str) -> int:
    """Set the ``locale`` of every StringNormalizer in ``model`` (in place); how many were changed."""
    from onnx import helper

    changed = 0
    for node in list(all_nodes(model)):
        if node.op_type == "StringNormalizer":
            kept = [a for a in node.attribute if a.name != "locale"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("locale", locale)])
            changed += 1
    return changed
