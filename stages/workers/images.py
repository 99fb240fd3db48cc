"""What runs on the executors for the image stages: Arrow record batches in, Arrow record batches out.

Each function is the body of a ``mapInArrow`` and gets a small picklable job built on the driver.
Rows are decoded through :class:`~zoo.stages.workers.image_input.ImageInput`; a row that cannot be
read gets its stage's ``handleInvalid`` outcome (``error`` fails naming the file or row, ``skip``
drops it, ``keep`` keeps it with the reason), and nothing else in the batch is lost.

``featurize_images`` cuts each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows)
into inner batches of ``batch_size`` rows (0: :func:`zoo.runtime.sessions.rows_per_call`) that are
preprocessed into one reused buffer (two where the next is decoded ahead, see ``featurize_images``)
and run through the worker's cached ONNX Runtime session: memory per worker is bounded by one Arrow
batch plus two inner batches, whatever the partition size.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from zoo.stages.workers.image_input import ImageInput

from zoo.errors import ImageError
from zoo.runtime.arrow import arrow_values, with_outcomes
from zoo.runtime.models import ModelSpec
from zoo.runtime.sessions import RuntimeOptions


@dataclass(frozen=True)
class ImageJob:
    """Everything an executor needs to featurize one column of images (picklable)."""

    spec: ModelSpec
    image: ImageInput
    batch_size: int
    runtime: RuntimeOptions
    handle_invalid: str
    error_col: str
    output_col: str
    stage: str  # for messages
    fast_decode: bool = False  # JPEGs decoded at 1/2, 1/4 or 1/8 scale when the resize allows it
    decode: str = "cpu"  # cpu | gpu | auto (zoo.runtime.gpu_decode)
    top_k: int = 0  # > 0 (image_classifier): the outputs as probabilities (double), plus the k best classes
    softmax: bool = False  # with top_k: the model outputs logits


def _classified(matrix: np.ndarray, valid: np.ndarray, job: ImageJob) -> list:
    """image_classifier's columns from the model's outputs: probabilities (softmax of logits), and the
    indices and scores of the ``top_k`` best classes (ties: the lower index first, as SparkML's argmax)."""
    probs = matrix.astype(np.float64)
    if job.softmax:
        probs = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :job.top_k]
    return [arrow_values(probs, valid), arrow_values(order.astype(np.int32), valid),
            arrow_values(np.take_along_axis(probs, order, axis=1), valid)]


def top_k_columns(output_col: str) -> tuple[str, str, str]:
    """The columns a classifying job adds: probabilities, top-k indices, top-k scores."""
    return output_col, f"{output_col}_index", f"{output_col}_score"


class BatchRows:
    """One Arrow batch's images, decoded and prepared into a batch buffer a slice at a time. Records
    which rows made it (``valid``) and why the others did not (``errors``, per ``handleInvalid``)."""

    def __init__(self, job: ImageJob, pre, gpu, batch, seen: int, step: int):
        self.job, self.pre, self.gpu, self.batch, self.seen, self.step = job, pre, gpu, batch, seen, step
        self.column = batch.column(batch.schema.get_field_index(job.image.column))
        self.reduction = pre.reduction if job.fast_decode else None
        self.valid = np.zeros(batch.num_rows, dtype=bool)
        self.errors: list[str | None] = [None] * batch.num_rows
        self.sizes = np.zeros((batch.num_rows, 2), dtype=np.int64)  # each decoded image's (height, width)
        self.own: dict[int, np.ndarray] = {}  # with no buffer: each row's input of its own size

    def prepare(self, start: int, buf: np.ndarray | None) -> list[int]:
        """Rows ``start:start + step`` into ``buf``, in order; the indices of the rows that made it.
        Without a buffer (a model taking each image at its own size) each row's input goes to ``own``."""
        image = self.job.image
        rows: list[int] = []
        items = self.column.slice(start, self.step).to_pylist()  # Python copies of one inner batch at a time
        decoded = self.gpu.decode_many(items) if self.gpu is not None else [None] * len(items)
        for i, item in enumerate(items, start):
            try:
                pixels = decoded[i - start]
                pixels = image.pixels(item, self.reduction) if pixels is None else pixels
                self.sizes[i] = pixels.shape[:2]
                prepared = self.pre(pixels, None if buf is None else buf[len(rows)])
                if buf is None:
                    self.own[i] = prepared
            except ImageError as exc:
                self._invalid(i, str(exc), hint=True)
                continue
            except Exception as exc:  # OpenCV errors on exotic input
                self._invalid(i, f"{type(exc).__name__}: {exc}", hint=False)
                continue
            self.valid[i] = True
            rows.append(i)
        return rows

    def _invalid(self, i: int, why: str, hint: bool) -> None:
        name = self.job.image.row_name(self.batch, i, self.seen)
        if self.job.handle_invalid == "error":
            advice = (". Set handleInvalid='skip' to drop such rows or 'keep' to keep them with null features and the "
                      "reason in the error column") if hint else ""
            raise ImageError(f"{self.job.stage}: {name}: {why}{advice}") from None
        self.errors[i] = f"{name}: {why}"


def prepared(prepare: "Callable[[int, np.ndarray], list[int]]", starts: "Sequence[int]", buffers: list[np.ndarray],
             pool: "ThreadPoolExecutor | None") -> Iterator[tuple[list[int], np.ndarray]]:
    """``(prepare(start, buffer), buffer)`` for each start, in order. With a ``pool`` (one thread) and
    two buffers the next slice is prepared on the pool's thread into the other buffer while the
    caller runs this one: a buffer is written again only after the caller has asked for the next
    slice, i.e. is done with it. An error of ``prepare`` reaches the caller at its slice."""
    if pool is None:
        for start in starts:
            yield prepare(start, buffers[0]), buffers[0]
        return
    pending = pool.submit(prepare, starts[0], buffers[0]) if starts else None
    for k in range(len(starts)):
        rows = pending.result()
        if k + 1 < len(starts):
            pending = pool.submit(prepare, starts[k + 1], buffers[(k + 1) % 2])
        yield rows, buffers[k % 2]


def featurize_images(batches: Iterator, job: ImageJob) -> Iterator:
    """mapInArrow body of ``image_featurizer`` (and ``image_classifier``).

    Where ONNX Runtime leaves cores idle while it runs (more than one thread per task, or a GPU:
    :func:`zoo.runtime.sessions.decodes_ahead`) the next inner batch is decoded and prepared on a
    second thread meanwhile. With one CPU per task every core is already busy and it is not."""
    from zoo.runtime import imaging, sessions
    from zoo.runtime.gpu_decode import decoder_for
    from zoo.runtime.models import session_for

    spec, image = job.spec, job.image
    pre = imaging.Preprocessor(spec.preprocess, spec.input)
    session = None
    step = sessions.rows_per_call(job.batch_size, job.runtime.device)
    gpu = decoder_for(job.decode, job.runtime.device, job.stage, image.max_pixels) if image.kind == "binary" else None
    # the GPU decoder batches on the device itself; it stays on the task's thread
    pool = ThreadPoolExecutor(1, thread_name_prefix="zoo-decode") \
        if gpu is None and sessions.decodes_ahead(job.runtime) else None
    buffers = [np.empty((step, *pre.row_shape), dtype=pre.dtype) for _ in range(2 if pool else 1)]
    seen = 0
    try:
        for batch in batches:
            n = batch.num_rows
            batch_rows = BatchRows(job, pre, gpu, batch, seen, step)
            chunks: list[np.ndarray] = []
            for rows, buf in prepared(batch_rows.prepare, range(0, n, step), buffers, pool):
                if rows:
                    session = session or session_for(spec, job.runtime, on_executor=True)
                    out = session.run([spec.output], {spec.input["name"]: buf[: len(rows)]})[0]
                    chunks.append(np.asarray(out, dtype=np.float32).reshape(len(rows), -1))
            valid = batch_rows.valid
            matrix = np.zeros((n, spec.features), dtype=np.float32)
            if chunks:
                matrix[valid] = np.concatenate(chunks)
            seen += n
            if job.top_k:
                columns = [*batch.columns, *_classified(matrix, valid, job)]
                names = [*batch.schema.names, *top_k_columns(job.output_col)]
            else:
                columns = [*batch.columns, arrow_values(matrix, valid)]
                names = [*batch.schema.names, job.output_col]
            yield with_outcomes(columns, names, batch_rows.errors, valid, job.handle_invalid, job.error_col)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # a slice still being prepared writes into our buffer


# -- image_transformer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformJob:
    """What an executor needs to run an ``image_transformer`` chain (picklable)."""

    image: ImageInput
    ops: tuple[dict[str, Any], ...]
    output_format: str  # struct | png | jpeg | array
    handle_invalid: str
    output_col: str
    stage: str


def apply_ops(img: np.ndarray, ops: list[dict[str, Any]]) -> np.ndarray:
    """Run the chain on one image (numpy in, numpy out; no encoding between ops)."""
    import cv2

    for o in ops:
        op = o["op"]
        if op == "resize":
            h, w = img.shape[:2]
            if o.get("shorter"):
                s = int(o["shorter"])
                size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
            else:
                size = (int(o["width"]), int(o["height"]))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
        elif op in ("center_crop", "crop"):
            h, w = img.shape[:2]
            ch, cw = int(o["height"]), int(o["width"])
            y = int(round((h - ch) / 2.0)) if op == "center_crop" else int(o["y"])
            x = int(round((w - cw) / 2.0)) if op == "center_crop" else int(o["x"])
            if y < 0 or x < 0 or y + ch > h or x + cw > w:
                raise ImageError(f"cannot crop {ch}x{cw} at ({x}, {y}) from a {h}x{w} image")
            img = img[y:y + ch, x:x + cw]
        elif op == "color":
            img = cv2.cvtColor(img, getattr(cv2, f"COLOR_{o['code']}"))
        elif op == "flip":
            img = cv2.flip(img, {"lr": 1, "ud": 0, "both": -1}[o["axis"]])
        elif op == "blur":
            k = int(o["ksize"])
            img = cv2.GaussianBlur(img, (k, k), float(o.get("sigma", 0)))
        elif op == "threshold":
            kind = getattr(cv2, f"THRESH_{o.get('type', 'binary').upper()}")
            img = cv2.threshold(img, float(o["thresh"]), float(o.get("maxval", 255)), kind)[1]
        elif op == "normalize":
            channels = img.shape[2] if img.ndim == 3 else 1
            mean = np.resize(np.asarray(o.get("mean", [0.0]), np.float32), channels)
            std = np.resize(np.asarray(o.get("std", [1.0]), np.float32), channels)
            img = (img.astype(np.float32) * float(o.get("scale", 1.0)) - mean) / std
    return np.ascontiguousarray(img)


def _encode(img: np.ndarray, fmt: str, origin: str | None):
    import cv2

    if fmt == "array":
        return img.astype(np.float32).ravel()
    if img.dtype != np.uint8:
        raise ImageError(f"cannot encode a {img.dtype} image as {fmt}; use outputFormat='array' after normalize")
    if fmt in ("png", "jpeg"):
        ok, data = cv2.imencode(".png" if fmt == "png" else ".jpg", img)
        return data.tobytes()
    channels = img.shape[2] if img.ndim == 3 else 1
    mode = {1: 0, 3: 16, 4: 24}[channels]
    return {"origin": origin, "height": img.shape[0], "width": img.shape[1], "nChannels": channels, "mode": mode,
            "data": img.tobytes()}


def transform_images(batches: Iterator, job: TransformJob) -> Iterator:
    """mapInArrow body of ``image_transformer``: each image decoded once, the chain run on the pixels,
    the result encoded once."""
    import pyarrow as pa

    out_type = _arrow_type(job.output_format)
    for batch in batches:
        items = batch.column(batch.schema.get_field_index(job.image.column)).to_pylist()
        values, keep = [], []
        for i, item in enumerate(items):
            try:
                origin = item.get("origin") if isinstance(item, dict) else None
                values.append(_encode(apply_ops(job.image.pixels(item), list(job.ops)), job.output_format, origin))
                keep.append(True)
            except Exception as exc:  # ImageError or an OpenCV error on this image
                reason = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
                if job.handle_invalid == "error":
                    raise ImageError(f"{job.stage}: {job.image.row_name(batch, i, 0)}: {reason}") from None
                values.append(None)
                keep.append(job.handle_invalid == "keep")
        out = pa.RecordBatch.from_arrays([*batch.columns, pa.array(values, type=out_type)],
                                         names=[*batch.schema.names, job.output_col])
        yield out if all(keep) else out.filter(pa.array(keep))


def _arrow_type(output_format: str):
    import pyarrow as pa

    if output_format == "struct":  # Spark's image struct
        return pa.struct([("origin", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
                          ("nChannels", pa.int32()), ("mode", pa.int32()), ("data", pa.binary())])
    return pa.list_(pa.float32()) if output_format == "array" else pa.binary()


# -- image_augmenter -----------------------------------------------------------------------------------
FLIPS = {"flip_lr": 1, "flip_ud": 0, "flip_both": -1}  # cv2.flip codes


@dataclass(frozen=True)
class AugmentJob:
    """What an executor needs to add flipped copies of images (picklable)."""

    image: ImageInput
    variants: tuple[str, ...]
    variant_col: str
    bytes_col: str | None = None  # paths in: each file's bytes go to this new column, the flips beside them


def augment_images(batches: Iterator, job: AugmentJob) -> Iterator:
    """mapInArrow body of ``image_augmenter``: each row, then one row per flipped variant. An image that
    cannot be decoded keeps its row without variants, so the featurizer still sees and reports it."""
    import cv2
    import pyarrow as pa

    reader = replace(job.image, kind="binary") if job.bytes_col else job.image
    for batch in batches:
        col = batch.schema.get_field_index(job.image.column)
        items = batch.column(col).to_pylist()
        if job.bytes_col:
            items = [job.image.encoded(item) for item in items]  # None where unreadable: the featurizer says so
        take, images, labels = [], [], []
        for i, item in enumerate(items):
            take.append(i)
            images.append(item)
            labels.append("original")
            try:
                pixels = reader.pixels(item)
            except ImageError:
                continue  # the featurizer reports it under its own handleInvalid; nothing is dropped here
            for name in job.variants:
                flipped = np.ascontiguousarray(cv2.flip(pixels, FLIPS[name]))
                if reader.kind == "struct":
                    h, w = flipped.shape[:2]
                    value = {**item, "height": h, "width": w, "nChannels": 3, "mode": 16, "data": flipped.tobytes()}
                else:
                    ok, png = cv2.imencode(".png", flipped)  # lossless: no second JPEG generation
                    value = png.tobytes()
                take.append(i)
                images.append(value)
                labels.append(name)
        out = batch.take(pa.array(take, type=pa.int64()))
        columns, names = list(out.columns), list(batch.schema.names)
        if job.bytes_col:
            columns.append(pa.array(images, type=pa.binary()))
            names.append(job.bytes_col)
        else:
            columns[col] = pa.array(images, type=batch.schema.field(col).type)
        yield pa.RecordBatch.from_arrays([*columns, pa.array(labels, type=pa.string())], names=[*names, job.variant_col])
