"""Reading what sparkzoo needs from an ONNX file, and refusing files that reach outside it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from zoo.errors import ExternalDataError, InvalidModelError

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


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
