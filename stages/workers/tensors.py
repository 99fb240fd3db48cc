"""What runs on the executors for ``onnx_model``: columns fed to a model's inputs, its outputs back as
columns, on Arrow record batches (the body of ``mapInArrow``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from zoo.errors import StageError
from zoo.runtime import sessions
from zoo.runtime.arrow import arrow_values, numpy_view
from zoo.runtime.models import ModelSpec, obtain, session_for
from zoo.runtime.sessions import RuntimeOptions


ZIPMAP = "zipmap"  # the dtype of a fetched ZipMap output: class probabilities as array<double>


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
    zipmaps: tuple[tuple[str, tuple], ...] = ()  # (ZipMap output, its class labels in the model's order)
    handle_invalid: str = "error"  # a row the model cannot take (null, wrong type or width): error, skip, keep
    error_col: str = "error"


def model_with_outputs(model: "Path | bytes", extra: tuple[str, ...]) -> bytes:
    """The model with intermediate ``extra`` tensors added as graph outputs (types inferred by ORT)."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    for name in extra:
        proto.graph.output.append(onnx.ValueInfoProto(name=name))
    return proto.SerializeToString()


def tensor_session(spec: ModelSpec, extra: tuple[str, ...], runtime: RuntimeOptions, *, on_executor: bool = False):
    """The worker's session for ``spec``, with the intermediate tensors ``extra`` as outputs too."""
    if not extra:
        return session_for(spec, runtime, on_executor=on_executor)
    key = f"{spec.sha256}+{','.join(extra)}"
    return sessions.session(key, lambda: model_with_outputs(obtain(spec), extra), runtime)


def _column_matrix(column, n: int, dtype: str, shape: tuple, where: str, first_row: int | None = 0) -> np.ndarray:
    """Arrow column (numbers, or lists nested to any depth) as an (n, *shape) array of ``dtype``;
    rows are named counting from ``first_row`` (the slice's place in the partition), or not at all
    (None: the message goes into the row's own error column, and must not depend on partitioning)."""
    import pyarrow as pa

    def row(i: int) -> str:
        return "the row" if first_row is None else f"row {first_row + i}"

    if column.null_count:
        raise StageError(f"{where}: null value in {row(column.is_null().to_pylist().index(True))}")
    if dtype == "str":  # a string tensor (a converted text pipeline): ONNX Runtime takes numpy objects
        texts = np.array(column.to_pylist(), dtype=object)
        return texts.reshape(n, *[d if d > 0 else -1 for d in shape]) if shape else texts
    values, widths = column, None
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        lengths = numpy_view(values.value_lengths())
        if widths is None:
            widths = lengths
        values = values.flatten()
        if values.null_count:
            raise StageError(f"{where}: an array holds a null element")
    flat = numpy_view(values).astype(dtype, copy=False)
    per_row = flat.size // n if n else 0
    expected = int(np.prod([d for d in shape if d > 0])) if shape else 1
    if n and (flat.size != per_row * n or (widths is not None and len(set(widths.tolist())) > 1)):
        raise StageError(f"{where}: rows hold different numbers of values; the model needs {expected} per row")
    if all(d > 0 for d in shape) and n and per_row != expected:
        bad = 0 if widths is None else int(np.argmax(widths != widths[0]))
        raise StageError(f"{where}: {row(bad)} holds {per_row} values; the model input needs {expected} per row "
                         f"(shape {list(shape)})")
    return flat.reshape(n, *[d if d > 0 else -1 for d in shape]) if shape else flat.reshape(n)


def run_tensors(batches: Iterator, job: TensorJob) -> Iterator:
    """mapInArrow body of ``onnx_model``: each inner batch fed to the model at once; when a row cannot
    be fed (null, wrong type or width), ``handle_invalid`` decides: fail naming it, or find the bad
    rows one by one and run the rest (``skip`` drops them, ``keep`` gives null outputs and the reason)."""
    import pyarrow as pa

    session = None
    step = sessions.rows_per_call(job.batch_size, job.runtime.device)
    tensors = [t for _, t, _, _ in job.fetches]
    labels = dict(job.zipmaps)
    seen = 0

    def feed_of(part, first_row: int | None) -> dict[str, np.ndarray]:
        return {
            name: _column_matrix(part.column(part.schema.get_field_index(col)), part.num_rows, dtype, shape,
                                 f"{job.stage}: column {col!r} (feeding model input {name!r})", first_row)
            for name, col, dtype, shape in job.feeds
        }

    for batch in batches:
        n = batch.num_rows
        parts: list[list[np.ndarray]] = [[] for _ in tensors]
        valid = np.ones(n, dtype=bool)
        errors: list[str | None] = [None] * n
        for start in range(0, n, step):
            part = batch.slice(start, step)
            try:
                feed = feed_of(part, seen + start)
            except StageError as exc:
                if job.handle_invalid == "error":
                    raise StageError(f"{exc}. Set handleInvalid='skip' to drop such rows or 'keep' to keep them with "
                                     "null outputs and the reason in the error column") from None
                good = []
                for i in range(part.num_rows):  # find the rows the model cannot take; the others still run
                    try:
                        feed_of(part.slice(i, 1), None)
                        good.append(i)
                    except StageError as row_exc:
                        valid[start + i], errors[start + i] = False, str(row_exc)
                if not good:
                    continue
                part = part.take(pa.array(good, pa.int64()))
                feed = feed_of(part, seen + start)
            session = session or tensor_session(job.spec, job.extra_outputs, job.runtime, on_executor=True)
            for i, value in enumerate(session.run(tensors, feed)):
                if tensors[i] in labels:  # ZipMap: one {class: probability} per row, in the model's class order
                    value = np.array([[row[k] for k in labels[tensors[i]]] for row in value], np.float64)
                parts[i].append(np.asarray(value))
        seen += n
        columns, names = list(batch.columns), list(batch.schema.names)
        for (col, _, dtype, is_array), chunks in zip(job.fetches, parts):
            names.append(col)
            columns.append(_output_column(chunks, n, dtype, is_array, valid))
        if job.handle_invalid == "keep":
            columns.append(pa.array(errors, type=pa.string()))
            names.append(job.error_col)
        out = pa.RecordBatch.from_arrays(columns, names=names)
        if job.handle_invalid == "skip" and not valid.all():
            out = out.filter(pa.array(valid))
        yield out


def _output_column(chunks: list[np.ndarray], n: int, dtype: str, is_array: bool, valid: np.ndarray):
    """One fetched output of a batch as an Arrow column: numbers (scalars or flat arrays), or strings;
    null where ``valid`` is False (rows the model could not take)."""
    import pyarrow as pa

    m = int(valid.sum())
    if dtype == "str":
        values = iter(np.concatenate(chunks).reshape(m, -1) if chunks else [])
        rows = [next(values) if ok else None for ok in valid]
        if is_array:
            return pa.array([None if r is None else [str(v) for v in r] for r in rows], pa.list_(pa.string()))
        return pa.array([None if r is None else str(r[0]) for r in rows], pa.string())
    np_dtype = np.dtype("float64" if dtype == ZIPMAP else dtype)
    if chunks:
        values = np.concatenate(chunks).astype(np_dtype, copy=False)
        values = values.reshape(m, -1) if is_array else values.reshape(m)
        if m == n:
            return arrow_values(values)
    else:  # an empty batch, or no row of it valid
        values = np.zeros((0, 1) if is_array else 0, np_dtype)
    full = np.zeros((n, *values.shape[1:]), np_dtype)
    full[valid] = values
    if is_array:
        return arrow_values(full, valid)
    return pa.array(full, mask=~valid)
