"""Reading what sparkzoo needs from an ONNX file, and refusing files that reach outside it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from zoo.errors import InvalidModelError, UnsafePathError

_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
        raise InvalidModelError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from None


def _external_locations(model) -> list[str]:
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    out = []
    for tensor in _get_all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            out.extend(e.value for e in tensor.external_data if e.key == "location")
    return out


def check_external_data(path: Path, model=None) -> list[str]:
    """Raise :class:`UnsafePathError` if an external-data reference leaves the model's directory.

    Returns the (safe) external locations; callers that keep single-file blobs refuse any.
    """
    model = model if model is not None else _load(path)
    locations = _external_locations(model)
    base = path.parent.resolve()
    for loc in locations:
        escapes = (
            PurePosixPath(loc).is_absolute()
            or PureWindowsPath(loc).is_absolute()
            or PureWindowsPath(loc).drive
            or ".." in PurePosixPath(loc.replace("\\", "/")).parts
            or not (base / loc).resolve().is_relative_to(base)
        )
        if escapes:
            raise UnsafePathError(
                f"{path}: external data location {loc!r} points outside the model's directory {base}; refusing it"
            )
    return locations


def _dims(value_info) -> list[Any]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dims


def describe_model(path: Path) -> dict[str, Any]:
    """The registry ``input``/``output``/``opset`` fields of a single-file ONNX model."""
    model = _load(path)
    if check_external_data(path, model):
        raise InvalidModelError(
            f"{path} keeps weights in external data files; the zoo stores single-file models. Re-save it with "
            "onnx.save_model(model, path, save_as_external_data=False) (models under 2 GB)"
        )
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
