"""What runs on the executors for ``object_detector``: Arrow batches of images in, a column of boxes out.

Images are decoded and prepared exactly as for ``image_featurizer`` (:class:`BatchRows`: the same
``handleInvalid`` outcomes, inner batches into one reused buffer), run through the worker's cached
ONNX Runtime session with every output the recipe reads, then decoded by
:mod:`zoo.runtime.detection` (vectorised numpy) and mapped back to each original image's pixels.
A model whose graph fixes the batch at 1 (YOLOX exports, the Ultra-Light detectors) runs one image
per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from zoo.stages.workers.image_input import ImageInput
from zoo.stages.workers.images import BatchRows, ImageJob, prepared

from zoo.runtime.arrow import with_outcomes
from zoo.runtime.detection import Candidates, Recipe, clip, decode, select, to_image

FIELDS = ("label", "classIndex", "score", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class DetectJob:
    """Everything an executor needs to detect objects in one column of images (picklable): the image
    side as image_featurizer's (``images``: model, decoding, batching, ``handleInvalid``), then the
    recipe and the choices that turn outputs into boxes."""

    images: ImageJob  # its fast_decode is never set: a reduced decode would move the boxes
    recipe: Recipe
    bound: tuple[tuple[str, str], ...]  # role -> graph output
    labels: tuple[str, ...]  # class names by index ('' where the set has none)
    threshold: float
    iou: float
    max_detections: int
    allowed: tuple[int, ...] | None  # class indices kept (None: all)


def arrow_type():
    import pyarrow as pa

    return pa.list_(pa.field("item", pa.struct([
        pa.field("label", pa.string()), pa.field("classIndex", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False), *[pa.field(n, pa.float32(), nullable=False) for n in FIELDS[3:]],
    ]), nullable=False))


def rows_per_call(job: DetectJob) -> int:
    from zoo.runtime import sessions

    fixed = (job.images.spec.input.get("shape") or [None])[0]
    if fixed == 1 or job.recipe.image_shape_input or unbatched(job):  # YOLOv3's boxes output holds one image
        return 1
    return sessions.rows_per_call(job.images.batch_size, job.images.runtime.device)


def unbatched(job: DetectJob) -> bool:
    """The graph takes one image of its own size, without a batch axis (Faster R-CNN: [3, H, W])."""
    return len(job.images.spec.input.get("shape") or []) == 3


def _column(found: list[Candidates | None], job: DetectJob):
    """One list<struct> Arrow column: a list per row, null where the image was invalid."""
    import pyarrow as pa

    offsets, total = [0], 0
    for f in found:
        total += 0 if f is None else len(f.scores)
        offsets.append(total)
    kept = [f for f in found if f is not None and len(f.scores)]
    boxes = np.concatenate([f.boxes for f in kept]) if kept else np.zeros((0, 4), np.float32)
    scores = np.concatenate([f.scores for f in kept]) if kept else np.zeros(0, np.float32)
    classes = np.concatenate([f.classes for f in kept]) if kept else np.zeros(0, np.int32)
    names = np.asarray(job.labels + ("",), dtype=object)
    index = np.where((classes >= 0) & (classes < len(job.labels)), classes, len(job.labels))
    label = pa.array(names[index], type=pa.string(), mask=index == len(job.labels))
    values = pa.StructArray.from_arrays(
        [label, pa.array(classes, pa.int32()), pa.array(scores, pa.float32()),
         *[pa.array(np.ascontiguousarray(boxes[:, k]), pa.float32()) for k in range(4)]],
        fields=list(arrow_type().value_type))
    mask = pa.array([f is None for f in found], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=arrow_type(), mask=mask)


def detect_images(batches: Iterator, job: DetectJob) -> Iterator:
    """mapInArrow body of ``object_detector``."""
    from zoo.runtime import imaging
    from zoo.runtime.models import session_for

    images = job.images
    spec = images.spec
    pre = imaging.Preprocessor(spec.preprocess, spec.input)
    step = rows_per_call(job)
    single = unbatched(job)  # each image its own input: no shared buffer
    buffers = [None] if single else [np.empty((step, *pre.row_shape), dtype=pre.dtype)]
    bound = dict(job.bound)
    roles, names = list(bound), list(bound.values())
    allowed = np.asarray(job.allowed, np.int32) if job.allowed is not None else None
    session, seen = None, 0
    for batch in batches:
        n = batch.num_rows
        rows_of = BatchRows(images, pre, None, batch, seen, step)
        found: list[Candidates | None] = [None] * n
        for rows, buf in prepared(rows_of.prepare, range(0, n, step), buffers, None):
            if not rows:
                continue
            session = session or session_for(spec, images.runtime, on_executor=True)
            feed = {spec.input["name"]: rows_of.own.pop(rows[0]) if single else buf[: len(rows)]}
            if job.recipe.image_shape_input:  # the graph maps its boxes to each image's size itself
                feed[job.recipe.image_shape_input] = rows_of.sizes[rows].astype(np.float32)
            outputs = dict(zip(roles, session.run(names, feed)))
            for i, cand in zip(rows, decode(job.recipe, outputs, (pre.height, pre.width), job.threshold)):
                h, w = (int(v) for v in rows_of.sizes[i])
                transform = (1.0, 1.0, 0.0, 0.0) if job.recipe.box_units == "image_pixels" else pre.box_transform(h, w)
                if job.recipe.nms_space == "input":  # NMS where the authors run it, then to the image
                    kept = to_image(select(cand, job.recipe, job.iou, job.max_detections, allowed), transform)
                else:
                    kept = select(to_image(cand, transform), job.recipe, job.iou, job.max_detections, allowed)
                found[i] = clip(kept, h, w)
        seen += n
        yield with_outcomes([*batch.columns, _column(found, job)], [*batch.schema.names, images.output_col],
                            rows_of.errors, rows_of.valid, images.handle_invalid, images.error_col)


# -- detection_crops ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CropJob:
    """What an executor needs to cut each detection out of its image (picklable)."""

    image: ImageInput
    detections_col: str
    output_col: str  # the crop (PNG bytes)
    box_col: str  # the detection the crop came from
    margin: float  # added on every side, as a fraction of the box's width and height
    drop: tuple[str, ...]  # input columns not carried onto the crop rows


def crop_box(pixels: np.ndarray, box: dict, margin: float) -> np.ndarray:
    """The pixels of ``box`` (x0, y0, x1, y1 in the image's pixels) widened by ``margin`` x its size on
    each side, clipped to the image; at least one pixel."""
    h, w = pixels.shape[:2]
    bw, bh = box["x1"] - box["x0"], box["y1"] - box["y0"]
    x0 = int(np.floor(max(0.0, box["x0"] - margin * bw)))
    y0 = int(np.floor(max(0.0, box["y0"] - margin * bh)))
    x1 = int(np.ceil(min(float(w), box["x1"] + margin * bw)))
    y1 = int(np.ceil(min(float(h), box["y1"] + margin * bh)))
    x0, y0 = min(x0, w - 1), min(y0, h - 1)
    return pixels[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


def crop_detections(batches: Iterator, job: CropJob) -> Iterator:
    """mapInArrow body of ``detection_crops``: each image decoded once, one row per detection with its
    crop (lossless PNG) and the detection; an image the detector could not read (a null list) keeps one
    row with a null crop, so its error still reaches the end of the pipeline."""
    import cv2
    import pyarrow as pa

    from zoo.errors import ImageError

    for batch in batches:
        detections = batch.column(batch.schema.get_field_index(job.detections_col)).to_pylist()
        images = batch.column(batch.schema.get_field_index(job.image.column)).to_pylist()
        take, crops, boxes = [], [], []
        for i, (found, item) in enumerate(zip(detections, images)):
            if found is None:
                take.append(i)
                crops.append(None)
                boxes.append(None)
                continue
            if not found:
                continue
            try:
                pixels = job.image.pixels(item)
            except ImageError as exc:  # the detector read it: the bytes changed between the two reads
                raise ImageError(f"detection_crops: {job.image.row_name(batch, i, 0)}: {exc}") from None
            for box in found:
                ok, png = cv2.imencode(".png", crop_box(pixels, box, job.margin))
                take.append(i)
                crops.append(png.tobytes())
                boxes.append(box)
        out = batch.take(pa.array(take, type=pa.int64()))
        keep = [n for n in batch.schema.names if n not in job.drop and n != job.detections_col]
        box_type = batch.schema.field(job.detections_col).type.value_type
        columns = [out.column(out.schema.get_field_index(n)) for n in keep]
        yield pa.RecordBatch.from_arrays(
            [*columns, pa.array(boxes, type=box_type), pa.array(crops, type=pa.binary())],
            names=[*keep, job.box_col, job.output_col])
