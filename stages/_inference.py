"""The executor side of the model stages: Arrow record batches in, Arrow record batches out.

Runs inside ``mapInArrow``: each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch``
rows) is cut into inner batches of ``batch_size`` rows (0: :func:`zoo._runtime.rows_per_call`) that are preprocessed into one reused
buffer and run through the worker's cached ONNX Runtime session. Memory per worker is bounded
by one Arrow batch plus one inner batch, whatever the partition size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from zoo._modelref import ModelSpec
from zoo._runtime import RuntimeOptions

INVALID_MODES = ("error", "skip", "keep")


@dataclass(frozen=True)
class ImageJob:
    """Everything an executor needs to featurize one column of images (picklable)."""

    spec: ModelSpec
    input_col: str
    input_kind: str  # binary | struct | path
    batch_size: int
    runtime: RuntimeOptions
    handle_invalid: str
    error_col: str
    max_pixels: int
    output_col: str
    stage: str  # for messages
    name_col: str | None  # a column naming each row in errors (path / image.origin)
    fast_decode: bool = False  # JPEGs decoded at 1/2, 1/4 or 1/8 scale when the resize allows it


def _session(spec: ModelSpec, runtime: RuntimeOptions, *, on_executor: bool = False):
    """The worker's session for ``spec``; ``on_executor`` uses the node's cached optimised model file."""
    from zoo import _modelref, _runtime
    from zoo.config import settings

    home = (spec.settings or settings()).home if on_executor else None
    return _runtime.session(spec.sha256, lambda: _modelref.fetch(spec), runtime, home)


def _arrow_values(matrix: np.ndarray, valid: np.ndarray | None = None):
    """A numeric Arrow array for 1-D ``matrix``, else list<…> over its rows (no copy of the values);
    rows where ``valid`` is False are null.

    Built from buffers: ``pa.array`` imports pandas (to check for pandas objects), ~45 MB in every
    Python worker that never uses it."""
    import pyarrow as pa

    if matrix.ndim == 1:
        return _flat_array(matrix)
    n, width = matrix.shape
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    validity = None if valid is None or valid.all() else _bitmap(valid)
    values = _flat_array(np.ascontiguousarray(matrix).reshape(-1))
    return pa.Array.from_buffers(pa.list_(values.type), n, [validity, offsets], children=[values])


def _flat_array(values: np.ndarray):
    """A 1-D Arrow array over ``values``' memory (booleans are packed into bits)."""
    import pyarrow as pa

    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bitmap(values)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _numpy(array) -> np.ndarray:
    """A numpy view of a null-free numeric or boolean Arrow array (``to_numpy`` imports pandas)."""
    import pyarrow as pa

    t, n = array.type, len(array)
    if pa.types.is_boolean(t):
        if n == 0:
            return np.empty(0, np.bool_)
        bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
        return bits[array.offset:array.offset + n].astype(np.bool_)
    if pa.types.is_floating(t):
        dtype = np.dtype(f"float{t.bit_width}")
    elif pa.types.is_integer(t):
        dtype = np.dtype(f"{'int' if pa.types.is_signed_integer(t) else 'uint'}{t.bit_width}")
    else:
        return array.to_numpy(zero_copy_only=False)
    if n == 0:
        return np.empty(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype, count=n, offset=array.offset * dtype.itemsize)


def _bitmap(flags: np.ndarray):
    """Arrow's bit-packed (least significant bit first) form of a boolean numpy array."""
    import pyarrow as pa

    return pa.py_buffer(np.packbits(flags.astype(np.bool_, copy=False), bitorder="little"))


def _read_path(path: str) -> bytes:
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if path.startswith("file:"):
        path = url2pathname(urlparse(path).path)
    with open(path, "rb") as fh:
        return fh.read()


def _pixels(item: Any, job: ImageJob, reduction: Any = None) -> np.ndarray:
    from zoo import _imaging

    if job.input_kind == "struct":
        if item is None:
            return _imaging.decode(None)
        return _imaging.from_struct(item["height"], item["width"], item["nChannels"], item["mode"], item["data"])
    if job.input_kind == "path":
        if item is None:
            return _imaging.decode(None)
        try:
            item = _read_path(item)
        except OSError as exc:
            from zoo.errors import ImageError

            raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
    return _imaging.decode(item, job.max_pixels, reduction)


def _row_name(batch, job: ImageJob, i: int, offset: int) -> str:
    if job.name_col:
        value = batch.column(batch.schema.get_field_index(job.name_col))[i].as_py()
        if isinstance(value, dict):
            value = value.get("origin")
        if value:
            return f"file {value}"
    from pyspark import TaskContext

    ctx = TaskContext.get()
    part = f" of partition {ctx.partitionId()}" if ctx is not None else ""
    return f"row {offset + i}{part}"


def featurize_images(batches: Iterator, job: ImageJob) -> Iterator:
    """mapInArrow body of ``image_featurizer``."""
    import pyarrow as pa

    from zoo import _imaging, _runtime
    from zoo.errors import ImageError

    spec = job.spec
    pre = _imaging.Preprocessor(spec.preprocess, spec.input)
    session = None
    step = _runtime.rows_per_call(job.batch_size, job.runtime.device)
    reduction = pre.reduction if job.fast_decode else None
    buf = np.empty((step, *pre.row_shape), dtype=pre.dtype)
    width = spec.features
    seen = 0
    for batch in batches:
        n = batch.num_rows
        column = batch.column(batch.schema.get_field_index(job.input_col))
        valid = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        chunks: list[np.ndarray] = []
        for start in range(0, n, step):
            rows = []
            items = column.slice(start, step).to_pylist()  # Python copies of one inner batch at a time
            for i, item in enumerate(items, start):
                try:
                    pre(_pixels(item, job, reduction), buf[len(rows)])
                except ImageError as exc:
                    if job.handle_invalid == "error":
                        raise ImageError(
                            f"{job.stage}: {_row_name(batch, job, i, seen)}: {exc}. Set handleInvalid='skip' to drop "
                            "such rows or 'keep' to keep them with null features and the reason in the error column"
                        ) from None
                    errors[i] = f"{_row_name(batch, job, i, seen)}: {exc}"
                    continue
                except Exception as exc:  # OpenCV errors on exotic input
                    if job.handle_invalid == "error":
                        raise ImageError(f"{job.stage}: {_row_name(batch, job, i, seen)}: {type(exc).__name__}: {exc}") from None
                    errors[i] = f"{_row_name(batch, job, i, seen)}: {type(exc).__name__}: {exc}"
                    continue
                valid[i] = True
                rows.append(i)
            if rows:
                session = session or _session(spec, job.runtime, on_executor=True)
                out = session.run([spec.output], {spec.input["name"]: buf[: len(rows)]})[0]
                chunks.append(np.asarray(out, dtype=np.float32).reshape(len(rows), -1))
        matrix = np.zeros((n, width), dtype=np.float32)
        if chunks:
            matrix[valid] = np.concatenate(chunks)
        seen += n
        columns = [*batch.columns, _arrow_values(matrix, valid)]
        names = [*batch.schema.names, job.output_col]
        if job.handle_invalid == "keep":
            columns.append(pa.array(errors, type=pa.string()))
            names.append(job.error_col)
        out = pa.RecordBatch.from_arrays(columns, names=names)
        if job.handle_invalid == "skip" and not valid.all():
            out = out.filter(_flat_array(valid))
        yield out


# -- onnx_model ----------------------------------------------------------------------------------------
_NP = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16", "tensor(int64)": "int64",
       "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


@dataclass(frozen=True)
class TensorJob:
    """Everything an executor needs to run ``onnx_model`` on Arrow batches (picklable)."""

    spec: ModelSpec
    feeds: tuple[tuple[str, str, str, tuple], ...]  # (model input, column, numpy dtype, per-row shape)
    fetches: tuple[tuple[str, str, str, bool], ...]  # (output column, tensor, numpy dtype, is array)
    extra_outputs: tuple[str, ...]  # tensors that are not graph outputs
    batch_size: int
    runtime: RuntimeOptions
    stage: str


def model_with_outputs(model: "Path | bytes", extra: tuple[str, ...]) -> bytes:
    """The model with intermediate ``extra`` tensors added as graph outputs (types inferred by ORT)."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    for name in extra:
        proto.graph.output.append(onnx.ValueInfoProto(name=name))
    return proto.SerializeToString()


def tensor_session(spec: ModelSpec, extra: tuple[str, ...], runtime: RuntimeOptions, *, on_executor: bool = False):
    from zoo import _modelref, _runtime

    if not extra:
        return _session(spec, runtime, on_executor=on_executor)
    key = f"{spec.sha256}+{','.join(extra)}"
    return _runtime.session(key, lambda: model_with_outputs(_modelref.fetch(spec), extra), runtime)


def _column_matrix(column, n: int, dtype: str, shape: tuple, where: str) -> np.ndarray:
    """Arrow column (numbers, or lists nested to any depth) as an (n, *shape) array of ``dtype``."""
    import pyarrow as pa

    from zoo.errors import StageError

    if column.null_count:
        raise StageError(f"{where}: null value in row {column.is_null().to_pylist().index(True)}")
    values, widths = column, None
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        lengths = _numpy(values.value_lengths())
        if widths is None:
            widths = lengths
        values = values.flatten()
        if values.null_count:
            raise StageError(f"{where}: an array holds a null element")
    flat = _numpy(values).astype(dtype, copy=False)
    per_row = flat.size // n if n else 0
    expected = int(np.prod([d for d in shape if d > 0])) if shape else 1
    if n and (flat.size != per_row * n or (widths is not None and len(set(widths.tolist())) > 1)):
        raise StageError(f"{where}: rows hold different numbers of values; the model needs {expected} per row")
    if all(d > 0 for d in shape) and n and per_row != expected:
        bad = 0 if widths is None else int(np.argmax(widths != widths[0]))
        raise StageError(f"{where}: row {bad} holds {per_row} values; the model input needs {expected} per row "
                         f"(shape {list(shape)})")
    return flat.reshape(n, *[d if d > 0 else -1 for d in shape]) if shape else flat.reshape(n)


def run_tensors(batches: Iterator, job: TensorJob) -> Iterator:
    """mapInArrow body of ``onnx_model``."""
    import pyarrow as pa

    from zoo import _runtime

    session = None
    step = _runtime.rows_per_call(job.batch_size, job.runtime.device)
    tensors = [t for _, t, _, _ in job.fetches]
    for batch in batches:
        n = batch.num_rows
        parts: list[list[np.ndarray]] = [[] for _ in tensors]
        for start in range(0, n, step):
            part = batch.slice(start, step)
            feed = {
                name: _column_matrix(part.column(part.schema.get_field_index(col)), part.num_rows, dtype, shape,
                                     f"{job.stage}: column {col!r} (feeding model input {name!r})")
                for name, col, dtype, shape in job.feeds
            }
            session = session or tensor_session(job.spec, job.extra_outputs, job.runtime, on_executor=True)
            for i, value in enumerate(session.run(tensors, feed)):
                parts[i].append(np.asarray(value))
        columns, names = list(batch.columns), list(batch.schema.names)
        for (col, _, dtype, is_array), chunks in zip(job.fetches, parts):
            names.append(col)
            if chunks:
                values = np.concatenate(chunks).astype(dtype, copy=False)
                columns.append(_arrow_values(values.reshape(n, -1) if is_array else values.reshape(n)))
            else:  # an empty batch
                empty = np.empty((0, 1) if is_array else 0, np.dtype(dtype))
                columns.append(_arrow_values(empty))
        yield pa.RecordBatch.from_arrays(columns, names=names)
