"""What runs on the executors for ``onnx_model``: columns fed to a model's inputs, its outputs back as
columns, on Arrow record batches (the body of ``mapInArrow``).

Rows of different lengths (token ids, variable-length sequences) for an input with one dynamic
dimension are either padded to the longest row of the slice, with ``pad_value`` and a 0/1 mask fed
to the model's mask input (outputs that follow the padded dimension are cut back to each row's
length), or, for a model that takes no mask, run in groups of rows of equal length. Either way a
row's result does not depend on which other rows share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from zoo.errors import StageError
from zoo.hub.onnx_files import external_references
from zoo.runtime import sessions
from zoo.runtime.arrow import arrow_values, numpy_view, with_outcomes
from zoo.runtime.models import ModelSpec, obtain, session_for
from zoo.runtime.sessions import RuntimeOptions


ZIPMAP = "zipmap"  # the dtype of a fetched ZipMap output: class probabilities per row
OUTPUT_KINDS = ("scalar", "flat", "nested", "map")  # how a fetched tensor becomes a column


@dataclass(frozen=True)
class Feed:
    """One model input and the column that feeds it."""

    input: str
    column: str  # the column of the batch (a temporary one for vectors and assembled scalar columns)
    dtype: str  # numpy dtype of the model input
    shape: tuple[int, ...]  # per row; -1 for a dynamic dimension
    shown: str = ""  # the column as the user named it, for messages
    parts: tuple[str, ...] = ()  # the scalar columns assembled into ``column``, in order

    @property
    def dynamic(self) -> bool:
        """One dynamic dimension: rows of different lengths can be padded or grouped along it."""
        return sum(d < 0 for d in self.shape) == 1


@dataclass(frozen=True)
class Fetch:
    """One output column and the tensor it holds."""

    column: str
    tensor: str
    dtype: str  # numpy dtype of the column's values, or ZIPMAP
    kind: str  # one of OUTPUT_KINDS
    rank: int = 1  # dimensions per row (a nested column's depth)
    follows_padding: bool = False  # its second dimension is the padded input dimension: cut back per row


@dataclass(frozen=True)
class TensorJob:
    """Everything an executor needs to run ``onnx_model`` on Arrow batches (picklable)."""

    spec: ModelSpec
    feeds: tuple[Feed, ...]
    fetches: tuple[Fetch, ...]
    extra_outputs: tuple[str, ...]  # tensors that are not graph outputs
    batch_size: int
    runtime: RuntimeOptions
    stage: str
    zipmaps: tuple[tuple[str, tuple], ...] = ()  # (ZipMap output, its class labels in the model's order)
    handle_invalid: str = "error"  # a row the model cannot take (null, wrong type or width): error, skip, keep
    error_col: str = "error"
    mask: tuple[str, str] | None = None  # (model input, numpy dtype) that gets the padding mask
    pad_value: float = 0.0


def model_with_outputs(model: "Path | bytes", extra: tuple[str, ...]) -> "bytes | sessions.GraphBeside":
    """The model with intermediate ``extra`` tensors added as graph outputs (types inferred by ORT).
    A multi-file model's weights stay in their files: the new graph is read beside them."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model), load_external_data=False)
    for name in extra:
        proto.graph.output.append(onnx.ValueInfoProto(name=name))
    graph = proto.SerializeToString()
    locations = {location for _, location in external_references(proto)}
    if isinstance(model, Path) and locations:
        return sessions.GraphBeside(graph, model.parent, sum((model.parent / f).stat().st_size for f in locations))
    return graph


def tensor_session(spec: ModelSpec, extra: tuple[str, ...], runtime: RuntimeOptions, *, on_executor: bool = False):
    """The worker's session for ``spec``, with the intermediate tensors ``extra`` as outputs too."""
    if not extra:
        return session_for(spec, runtime, on_executor=on_executor)
    key = f"{spec.key}+{','.join(extra)}"
    return sessions.session(key, lambda: model_with_outputs(obtain(spec), extra), runtime)


class RaggedRows(StageError):
    """Rows of a slice hold different numbers of values for an input with one dynamic dimension."""


def _where(stage: str, feed: Feed, column: str = "") -> str:
    """Where a bad value was found: the stage, the column as the user named it, the model input it feeds."""
    return f"{stage}: column {column or repr(feed.shown or feed.column)} (feeding model input {feed.input!r})"


def _leaves(column) -> tuple[object, np.ndarray | None]:
    """(the leaf values of a column of numbers or lists nested to any depth, each row's count of them;
    None for a column of scalars)."""
    import pyarrow as pa

    values, counts = column, None
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        lengths = numpy_view(values.value_lengths()).astype(np.int64)
        if counts is None:
            counts = lengths
        else:  # sum the inner lengths of each row's lists
            ends, bounds = np.r_[0, np.cumsum(lengths)], np.r_[0, np.cumsum(counts)]
            counts = ends[bounds[1:]] - ends[bounds[:-1]]
        values = values.flatten()
    return values, counts


def _column_matrix(column, n: int, feed: Feed, stage: str, first_row: int | None = 0) -> np.ndarray:
    """Arrow column (numbers, or lists nested to any depth) as an (n, *shape) array of the feed's dtype;
    rows are named counting from ``first_row`` (the slice's place in the partition), or not at all
    (None: the message goes into the row's own error column, and must not depend on partitioning).
    Raises :class:`RaggedRows` when rows of an input with a dynamic dimension differ in length."""

    def row(i: int) -> str:
        return "the row" if first_row is None else f"row {first_row + i}"

    dtype, shape, where = feed.dtype, feed.shape, _where(stage, feed)
    if column.null_count:
        raise StageError(f"{where}: null value in {row(column.is_null().to_pylist().index(True))}")
    if dtype == "str":  # a string tensor (a converted text pipeline): ONNX Runtime takes numpy objects
        texts = np.array(column.to_pylist(), dtype=object)
        return texts.reshape(n, *[d if d > 0 else -1 for d in shape]) if shape else texts
    values, counts = _leaves(column)
    if values.null_count:
        first = values.is_null().to_pylist().index(True)
        if feed.parts:  # an assembled row: name the scalar column that was null
            raise StageError(f"{_where(stage, feed, repr(feed.parts[first % len(feed.parts)]))}: null value in "
                             f"{row(first // len(feed.parts))}")
        raise StageError(f"{where}: an array holds a null element")
    counts = np.ones(n, np.int64) if counts is None else counts
    expected = int(np.prod([d for d in shape if d > 0])) if shape else 1
    wrong = counts % expected != 0 if feed.dynamic else counts != expected
    if n and wrong.any():
        bad = int(np.argmax(wrong))
        need = f"a multiple of {expected}" if feed.dynamic else str(expected)
        raise StageError(f"{where}: {row(bad)} holds {int(counts[bad])} values; the model input needs {need} per row"
                         f" (shape {list(shape)})")
    if n and feed.dynamic and (counts != counts[0]).any():
        raise RaggedRows(f"{where}: rows hold different numbers of values")
    flat = numpy_view(values).astype(dtype, copy=False)
    return flat.reshape(n, *[d if d > 0 else -1 for d in shape]) if shape else flat.reshape(n)


def _row_lengths(column, feed: Feed) -> np.ndarray:
    """Each row's length along the feed's dynamic dimension."""
    _, counts = _leaves(column)
    return counts // int(np.prod([d for d in feed.shape if d > 0]))


def _padded(column, feed: Feed, lengths: np.ndarray, pad_value: float, where: str) -> np.ndarray:
    """The rows of ``column`` padded with ``pad_value`` to the longest along the dynamic dimension."""
    values, _ = _leaves(column)
    if values.null_count:
        raise StageError(f"{where}: an array holds a null element")
    flat = numpy_view(values).astype(feed.dtype, copy=False)
    axis = next(i for i, d in enumerate(feed.shape) if d < 0)
    longest = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(lengths), *[d if d > 0 else longest for d in feed.shape]), pad_value, feed.dtype)
    start = 0
    for i, length in enumerate(lengths.tolist()):
        row_shape = [d if d > 0 else length for d in feed.shape]
        size = int(np.prod(row_shape))
        index = (i, *[slice(None) if k != axis else slice(0, length) for k in range(len(feed.shape))])
        out[index] = flat[start:start + size].reshape(row_shape)
        start += size
    return out


def run_tensors(batches: Iterator, job: TensorJob) -> Iterator:
    """mapInArrow body of ``onnx_model``: each inner batch fed to the model at once; when a row cannot
    be fed (null, wrong type or width), ``handle_invalid`` decides: fail naming it, or find the bad
    rows one by one and run the rest (``skip`` drops them, ``keep`` gives null outputs and the reason)."""
    import pyarrow as pa

    step = sessions.rows_per_call(job.batch_size, job.runtime.device)
    runner = _Runner(job)
    seen = 0
    for batch in batches:
        n = batch.num_rows
        results = _Results(job, n)
        for start in range(0, n, step):
            part = batch.slice(start, step)
            rows = np.arange(start, start + part.num_rows)
            try:
                runner.run(part, rows, seen + start, results)
            except StageError as exc:
                if job.handle_invalid == "error":
                    raise StageError(f"{exc}. Set handleInvalid='skip' to drop such rows or 'keep' to keep them with "
                                     "null outputs and the reason in the error column") from None
                good = []
                for i in range(part.num_rows):  # find the rows the model cannot take; the others still run
                    try:
                        runner.check_row(part.slice(i, 1))
                        good.append(i)
                    except StageError as row_exc:
                        results.invalid(start + i, str(row_exc))
                if good:
                    runner.run(part.take(pa.array(good, pa.int64())), rows[good], seen + start, results)
        seen += n
        columns, names = list(batch.columns), list(batch.schema.names)
        for fetch, column in zip(job.fetches, results.columns()):
            names.append(fetch.column)
            columns.append(column)
        yield with_outcomes(columns, names, results.errors, results.valid, job.handle_invalid, job.error_col)


def _column(part, feed: Feed):
    return part.column(part.schema.get_field_index(feed.column))


class _Runner:
    """Feeds slices of a batch to the worker's session: uniform, padded with a mask, or grouped by length."""

    def __init__(self, job: TensorJob):
        self.job, self.session = job, None
        self.tensors = [f.tensor for f in job.fetches]
        self.labels = dict(job.zipmaps)

    def _matrices(self, part, first_row: int | None) -> dict[str, np.ndarray]:
        return {f.input: _column_matrix(_column(part, f), part.num_rows, f, self.job.stage, first_row)
                for f in self.job.feeds}

    def check_row(self, row) -> None:
        """Raise the StageError that makes this one row unusable (its message names no row number)."""
        self._matrices(row, None)
        self._lengths(row, None)

    def _lengths(self, part, first_row: int | None) -> np.ndarray | None:
        """Each row's length along the dynamic dimension, which every dynamic input must agree on."""
        dynamic = [f for f in self.job.feeds if f.dynamic]
        if not dynamic:
            return None
        for f in dynamic:
            if _column(part, f).null_count:
                bad = _column(part, f).is_null().to_pylist().index(True)
                where = "the row" if first_row is None else f"row {first_row + bad}"
                raise StageError(f"{_where(self.job.stage, f)}: null value in {where}")
        first = _row_lengths(_column(part, dynamic[0]), dynamic[0])
        for f in dynamic[1:]:
            lengths = _row_lengths(_column(part, f), f)
            if (lengths != first).any():
                bad = int(np.argmax(lengths != first))
                where = "the row" if first_row is None else f"row {first_row + bad}"
                raise StageError(f"{_where(self.job.stage, f)}: {where} has {int(lengths[bad])} positions but column "
                                 f"{dynamic[0].shown or dynamic[0].column!r} has {int(first[bad])}")
        return first

    def _with_mask(self, feed: dict, lengths: np.ndarray | None) -> dict:
        if self.job.mask is None:
            return feed
        name, dtype = self.job.mask
        dynamic = next((f for f in self.job.feeds if f.dynamic), None)
        if dynamic is None:
            raise StageError(f"{self.job.stage}: the mask input {name!r} needs a fed input with a dynamic dimension")
        shape = feed[dynamic.input].shape
        axis = 1 + next(i for i, d in enumerate(dynamic.shape) if d < 0)
        if lengths is None:
            feed[name] = np.ones((shape[0], shape[axis]), dtype)
        else:
            feed[name] = (np.arange(shape[axis])[None, :] < lengths[:, None]).astype(dtype)
        return feed

    def run(self, part, rows: np.ndarray, first_row: int, results: "_Results") -> None:
        """Run ``part`` (whose rows are ``rows`` of the batch) and hand the outputs to ``results``."""
        try:
            feed, ragged = self._matrices(part, first_row), False
        except RaggedRows:
            feed, ragged = {}, True
        first = self._lengths(part, first_row)
        if not ragged:
            results.put(rows, self._call(self._with_mask(feed, None)))
            return
        import pyarrow as pa

        if self.job.mask is not None:  # pad to the longest row; the mask tells the model which positions are real
            feed = {f.input: _padded(_column(part, f), f, first, self.job.pad_value, _where(self.job.stage, f))
                    if f.dynamic else _column_matrix(_column(part, f), part.num_rows, f, self.job.stage, first_row)
                    for f in self.job.feeds}
            outputs = self._call(self._with_mask(feed, first))
            trimmed = [[o[i, :first[i]] for i in range(len(rows))] if f.follows_padding else o
                       for f, o in zip(self.job.fetches, outputs)]
            results.put(rows, trimmed)
            return
        for length in np.unique(first):  # no mask: rows of equal length run together, each group exactly
            members = np.flatnonzero(first == length)
            group = part.take(pa.array(members, pa.int64()))
            results.put(rows[members], self._call(self._matrices(group, first_row)))

    def _call(self, feed: dict) -> list:
        job = self.job
        self.session = self.session or tensor_session(job.spec, job.extra_outputs, job.runtime, on_executor=True)
        outputs = []
        for tensor, value in zip(self.tensors, self.session.run(self.tensors, feed)):
            if tensor in self.labels:  # ZipMap: one {class: probability} per row, in the model's class order
                value = np.array([[row[k] for k in self.labels[tensor]] for row in value], np.float64)
            outputs.append(np.asarray(value))
        return outputs


class _Results:
    """A batch's outputs as they come (blocks of rows in any order, or per-row arrays of different
    shapes), and which rows the model could not take."""

    def __init__(self, job: TensorJob, n: int):
        self.job, self.n = job, n
        self.valid = np.ones(n, dtype=bool)
        self.errors: list[str | None] = [None] * n
        self.blocks: list[list[tuple[np.ndarray, object]]] = [[] for _ in job.fetches]

    def invalid(self, row: int, reason: str) -> None:
        self.valid[row], self.errors[row] = False, reason

    def put(self, rows: np.ndarray, outputs: list) -> None:
        for blocks, value in zip(self.blocks, outputs):
            blocks.append((rows, value))

    def columns(self) -> list:
        return [_output_column(blocks, self.n, fetch, self.valid, dict(self.job.zipmaps).get(fetch.tensor, ()))
                for fetch, blocks in zip(self.job.fetches, self.blocks)]


def _output_column(blocks: list, n: int, fetch: Fetch, valid: np.ndarray, labels: tuple):
    """One fetched output of a batch as an Arrow column, null where ``valid`` is False."""
    import pyarrow as pa

    per_row = [None] * n  # rows' values, when blocks hold per-row arrays (cut back from padding)
    ragged = any(isinstance(v, list) for _, v in blocks)
    if ragged or fetch.dtype == "str":
        for rows, value in blocks:
            for i, row in zip(rows.tolist(), value):
                per_row[i] = np.asarray(row)
        return _rows_column(per_row, fetch)
    np_dtype = np.dtype("float64" if fetch.dtype == ZIPMAP else fetch.dtype)
    trail = next((v.shape[1:] for _, v in blocks), (1,) * fetch.rank if fetch.kind != "scalar" else ())
    if any(v.shape[1:] != trail for _, v in blocks):  # groups of rows of different lengths
        for rows, value in blocks:
            for i, row in zip(rows.tolist(), value):
                per_row[i] = row
        return _rows_column(per_row, fetch)
    if len(blocks) == 1 and len(blocks[0][0]) == n and (blocks[0][0] == np.arange(n)).all():
        full = blocks[0][1].astype(np_dtype, copy=False)
    else:
        full = np.zeros((n, *trail), np_dtype)
        for rows, value in blocks:
            full[rows] = value
    if fetch.kind == "scalar":
        full = full.reshape(n)
        return arrow_values(full) if valid.all() else pa.array(full, mask=~valid)
    if fetch.kind == "map":
        return _map_column(full.reshape(n, -1), labels, valid)
    if fetch.kind == "flat":
        full = full.reshape(n, int(np.prod(trail)))
    return arrow_values(full, valid)


def _rows_column(per_row: list, fetch: Fetch):
    """Per-row arrays (None for rows without a value) as an Arrow column of the fetch's kind."""
    import pyarrow as pa

    item = {"str": pa.string(), ZIPMAP: pa.float64()}.get(fetch.dtype) or pa.from_numpy_dtype(np.dtype(fetch.dtype))
    if fetch.kind == "scalar":
        return pa.array([None if r is None else r.reshape(-1)[0].item() for r in per_row], item)
    if fetch.kind == "nested":
        depth = max((r.ndim for r in per_row if r is not None), default=1)
        kind = item
        for _ in range(depth):
            kind = pa.list_(kind)
        return pa.array([None if r is None else r.tolist() for r in per_row], kind)
    return pa.array([None if r is None else r.reshape(-1).tolist() for r in per_row], pa.list_(item))


def _map_column(matrix: np.ndarray, labels: tuple, valid: np.ndarray):
    """ZipMap probabilities as a map column {class label: probability}, keys in the model's class order."""
    import pyarrow as pa

    counts = np.where(valid, matrix.shape[1], 0)
    offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))
    keys = pa.array(list(labels) * int(valid.sum()), pa.string() if labels and isinstance(labels[0], str) else pa.int64())
    items = pa.array(matrix[valid].reshape(-1), pa.float64())
    return pa.MapArray.from_arrays(offsets, keys, items, mask=pa.array(~valid) if not valid.all() else None)
