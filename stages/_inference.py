"""The executor side of the model stages: Arrow record batches in, Arrow record batches out.

Runs inside ``mapInArrow``: each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch``
rows) is cut into inner batches of ``batch_size`` rows that are preprocessed into one reused
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


def _session(spec: ModelSpec, runtime: RuntimeOptions):
    from zoo import _modelref, _runtime

    return _runtime.session(spec.sha256, lambda: _modelref.fetch(spec), runtime)


def _list_array(matrix: np.ndarray, valid: np.ndarray):
    """list<float> Arrow array over ``matrix`` rows (no copy); rows where ``valid`` is False are null."""
    import pyarrow as pa

    n, width = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    values = pa.array(matrix.reshape(-1))
    mask = None if valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


def _read_path(path: str) -> bytes:
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if path.startswith("file:"):
        path = url2pathname(urlparse(path).path)
    with open(path, "rb") as fh:
        return fh.read()


def _pixels(item: Any, job: ImageJob) -> np.ndarray:
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
    return _imaging.decode(item, job.max_pixels)


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

    from zoo import _imaging
    from zoo.errors import ImageError

    spec = job.spec
    pre = _imaging.Preprocessor(spec.preprocess, spec.input)
    session = None
    buf = np.empty((job.batch_size, *pre.row_shape), dtype=pre.dtype)
    width = spec.features
    seen = 0
    for batch in batches:
        n = batch.num_rows
        items = batch.column(batch.schema.get_field_index(job.input_col)).to_pylist()
        valid = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        chunks: list[np.ndarray] = []
        for start in range(0, n, job.batch_size):
            rows = []
            for i in range(start, min(n, start + job.batch_size)):
                try:
                    pre(_pixels(items[i], job), buf[len(rows)])
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
                session = session or _session(spec, job.runtime)
                out = session.run([spec.output], {spec.input["name"]: buf[: len(rows)]})[0]
                chunks.append(np.asarray(out, dtype=np.float32).reshape(len(rows), -1))
        matrix = np.zeros((n, width), dtype=np.float32)
        if chunks:
            matrix[valid] = np.concatenate(chunks)
        seen += n
        columns = [*batch.columns, _list_array(matrix, valid)]
        names = [*batch.schema.names, job.output_col]
        if job.handle_invalid == "keep":
            columns.append(pa.array(errors, type=pa.string()))
            names.append(job.error_col)
        out = pa.RecordBatch.from_arrays(columns, names=names)
        if job.handle_invalid == "skip" and not valid.all():
            out = out.filter(pa.array(valid))
        yield out
