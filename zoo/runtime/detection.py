"""From a detector's raw outputs to boxes in the original image, as the model's authors decode them.

A registry entry's ``detection`` (:class:`Recipe`) names a decoder family and its parameters; the
families follow the authors' published postprocessing:

- ``ultraface`` (Ultra-Light-Fast-Generic-Face-Detector): ``scores`` [N, boxes, classes] and
  ``boxes`` [N, boxes, 4], corner form normalised to the input; per class, scores above the
  threshold, the best ``candidates`` (200), hard NMS (IoU 0.3 in their demo);
- ``yolox`` (Megvii YOLOX): one output [N, anchors, 5 + classes] in grid units over strides 8, 16,
  32; x, y = (out + grid) * stride, w, h = exp(out) * stride; score = objectness x class score;
  class-aware NMS with the +1-pixel IoU of their ``demo_utils.nms``;
- ``decoded``: the graph computed boxes, scores and classes itself (SSD-ResNet34, the TF Object
  Detection API's SSD-MobileNet with ``num_detections``, Faster R-CNN without a batch axis); the
  recipe says the box order and units and where class ids start;
- ``yolo_region``: YOLOv2's region layer, [N, anchors * (5 + classes), S, S]: x = (sigmoid(tx) +
  cx) cells, w = anchor_w * exp(tw) cells, score = sigmoid(to) x softmax(classes).

Everything is vectorised over the batch and the candidates in numpy; the greedy NMS runs in OpenCV's
C++ (``dnn.NMSBoxes``). Executor code: numpy and OpenCV, no Spark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from zoo.errors import InvalidModelError

FAMILIES = ("ultraface", "yolox", "decoded", "yolo_region", "yolov3_nms", "yolov4", "retinanet")
# the outputs each family reads, in the order the graphs the family names list them
ROLES = {"ultraface": ("scores", "boxes"), "yolox": ("grid",), "decoded": ("boxes", "scores", "classes", "count"),
         "yolo_region": ("grid",), "yolov3_nms": ("boxes", "scores", "indices"), "yolov4": ("grid", "grid2", "grid3"),
         "retinanet": tuple(f"cls{k}" for k in range(1, 6)) + tuple(f"box{k}" for k in range(1, 6))}
_OPTIONAL = {"count"}
DEFAULTS = {"ultraface": dict(score_threshold=0.7, nms_iou=0.3, candidates=200, background_class=0),
            "yolox": dict(score_threshold=0.3, nms_iou=0.45, pixel_iou=True),
            "decoded": dict(score_threshold=0.5, nms_iou=0.5, nms_in_graph=True),
            "yolo_region": dict(score_threshold=0.3, nms_iou=0.45, best_class=True),
            "yolov3_nms": dict(score_threshold=0.0, nms_iou=1.0, nms_in_graph=True, box_format="yxyx",
                               box_units="image_pixels", image_shape_input="image_shape"),
            "yolov4": dict(score_threshold=0.25, nms_iou=0.213, best_class=True, xy_scale=(1.2, 1.1, 1.05)),
            "retinanet": dict(score_threshold=0.05, nms_iou=0.5, top_per_level=1000, pixel_iou=True, nms_space="input",
                              strides=(8, 16, 32, 64, 128), ratios=(1.0, 2.0, 0.5),
                              scales=(4.0, 4.0 * 2 ** (1 / 3), 4.0 * 2 ** (2 / 3)))}


@dataclass(frozen=True)
class Recipe:
    """A detector's postprocessing (the registry's ``detection`` object; see its schema)."""

    family: str
    outputs: tuple[tuple[str, str], ...] = ()  # role -> graph output, where the family's order does not hold
    box_format: str = "xyxy"
    box_units: str = "normalized"
    batched: bool = True
    class_offset: int = 0
    background_class: int = -1
    strides: tuple[int, ...] = (8, 16, 32)
    anchors: tuple[tuple[float, float], ...] = ()
    nms_in_graph: bool = False
    class_aware: bool = True
    best_class: bool = False
    pixel_iou: bool = False
    candidates: int = 0
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    image_shape_input: str | None = None  # yolov3_nms: a second input, each image's (height, width)
    xy_scale: tuple[float, ...] = ()  # yolov4: per head, the scale of sigmoid(x, y) around the cell
    ratios: tuple[float, ...] = ()  # retinanet: anchor aspect ratios (height / width)
    scales: tuple[float, ...] = ()  # retinanet: anchor sizes in strides
    top_per_level: int = 0  # retinanet: the best candidates of each level before NMS (0: all)
    nms_space: str = "image"  # where NMS runs: the original image's pixels (YOLOX), or the input's (RetinaNet)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], label: str) -> "Recipe":
        family = data.get("family")
        if family not in FAMILIES:
            raise InvalidModelError(f"model {label}: detection family {family!r} is not one of {', '.join(FAMILIES)}")
        values: dict[str, Any] = {**DEFAULTS[family], **{k: v for k, v in data.items() if k != "family"}}
        unknown = set(values) - {f for f in cls.__dataclass_fields__ if f not in ("family", "extra")}
        if unknown:
            raise InvalidModelError(f"model {label}: unknown detection field(s) {', '.join(sorted(unknown))}")
        values["outputs"] = tuple(sorted(dict(values.get("outputs") or {}).items()))
        values["strides"] = tuple(int(s) for s in values.get("strides", cls.strides))
        values["anchors"] = tuple((float(a), float(b)) for a, b in values.get("anchors", ()))
        values["xy_scale"] = tuple(float(s) for s in values.get("xy_scale", ()))
        values["ratios"] = tuple(float(s) for s in values.get("ratios", ()))
        values["scales"] = tuple(float(s) for s in values.get("scales", ()))
        recipe = cls(family=family, **values)
        if family in ("yolo_region", "yolov4") and not recipe.anchors:
            raise InvalidModelError(f"model {label}: a {family} detector needs its anchors")
        if family == "yolov4" and (len(recipe.anchors) != 3 * len(recipe.strides) or len(recipe.xy_scale) != len(recipe.strides)):
            raise InvalidModelError(f"model {label}: a yolov4 recipe needs 3 anchors and one xy_scale per stride")
        return recipe

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out["outputs"] = dict(self.outputs)
        out["strides"] = list(self.strides)
        out["anchors"] = [list(a) for a in self.anchors]
        out["xy_scale"] = list(self.xy_scale)
        out["ratios"], out["scales"] = list(self.ratios), list(self.scales)
        return out

    def bind(self, graph_outputs: Sequence[tuple[str, list]], label: str) -> dict[str, str]:
        """role -> graph output name, checked against the graph's outputs (name, shape): an
        :class:`InvalidModelError` naming the model and the output that does not fit the recipe."""
        names = [n for n, _ in graph_outputs]
        shapes = dict(graph_outputs)
        given = dict(self.outputs)
        roles = ROLES[self.family]
        bound: dict[str, str] = {}
        for i, role in enumerate(roles):
            name = given.get(role) or (names[i] if i < len(names) and not given else None)
            if name is None:
                if role in _OPTIONAL:
                    continue
                raise InvalidModelError(f"model {label}: the {self.family} recipe needs a {role!r} output, and the graph's "
                                        f"outputs are {names}; name it in the recipe's outputs")
            if name not in shapes:
                raise InvalidModelError(f"model {label}: the recipe's {role} output {name!r} is not an output of the graph "
                                        f"(its outputs: {names})")
            bound[role] = name
        problem = self._shape_problem({r: shapes[n] for r, n in bound.items()})
        if problem:
            raise InvalidModelError(f"model {label}: output {problem[0]!r} ({bound[problem[0]]!r}, shape "
                                    f"{shapes[bound[problem[0]]]}) does not fit the {self.family} recipe: {problem[1]}")
        return bound

    def _shape_problem(self, shapes: dict[str, list]) -> tuple[str, str] | None:
        def last(role: str):
            s = shapes[role]
            return s[-1] if s else None

        lead = 1 if self.batched else 0
        if self.family == "ultraface":
            if len(shapes["boxes"]) != 3 or last("boxes") not in (4, None):
                return "boxes", "expected [batch, boxes, 4]"
            if len(shapes["scores"]) != 3:
                return "scores", "expected [batch, boxes, classes]"
        elif self.family == "yolox":
            if len(shapes["grid"]) != 3 or (isinstance(last("grid"), int) and last("grid") < 6):
                return "grid", "expected [batch, anchors, 5 + classes]"
        elif self.family == "yolo_region":
            s = shapes["grid"]
            if len(s) != 4 or (isinstance(s[1], int) and s[1] % len(self.anchors)):
                return "grid", f"expected [batch, {len(self.anchors)} anchors x (5 + classes), S, S]"
        elif self.family == "yolov3_nms":
            if len(shapes["boxes"]) != 3 or last("boxes") not in (4, None):
                return "boxes", "expected [1, boxes, 4]"
            if len(shapes["scores"]) != 3:
                return "scores", "expected [1, classes, boxes]"
            if len(shapes["indices"]) not in (2, 3) or last("indices") not in (3, None):
                return "indices", "expected [selected, 3] or [1, selected, 3] (batch, class, box)"
        elif self.family == "yolov4":
            for role in ("grid", "grid2", "grid3"):
                if len(shapes[role]) != 5 or shapes[role][3] not in (3, None):
                    return role, "expected [batch, S, S, 3, 5 + classes]"
        elif self.family == "retinanet":
            a = len(self.ratios) * len(self.scales)
            for k in range(1, 6):
                if len(shapes[f"cls{k}"]) != 4 or (isinstance(shapes[f"cls{k}"][1], int) and shapes[f"cls{k}"][1] % a):
                    return f"cls{k}", f"expected [batch, {a} anchors x classes, H, W]"
                if len(shapes[f"box{k}"]) != 4 or shapes[f"box{k}"][1] not in (4 * a, None):
                    return f"box{k}", f"expected [batch, {4 * a}, H, W]"
        elif self.family == "decoded":
            if len(shapes["boxes"]) != 2 + lead or last("boxes") not in (4, None):
                return "boxes", f"expected {'[batch, boxes, 4]' if lead else '[boxes, 4]'}"
            for role in ("scores", "classes"):
                if len(shapes[role]) != 1 + lead:
                    return role, f"expected {'[batch, boxes]' if lead else '[boxes]'}"
        return None

    def classes(self, outputs_shape: dict[str, list]) -> int | None:
        """How many classes the graph scores (None where the graph does not say)."""
        if self.family == "ultraface":
            return outputs_shape["scores"][-1] if isinstance(outputs_shape["scores"][-1], int) else None
        if self.family == "yolox":
            width = outputs_shape["grid"][-1]
            return width - 5 if isinstance(width, int) else None
        if self.family == "yolo_region":
            depth = outputs_shape["grid"][1]
            return depth // len(self.anchors) - 5 if isinstance(depth, int) else None
        if self.family == "yolov3_nms":
            classes = outputs_shape["scores"][1]
            return classes if isinstance(classes, int) else None
        if self.family == "yolov4":
            width = outputs_shape["grid"][-1]
            return width - 5 if isinstance(width, int) else None
        if self.family == "retinanet":
            depth = outputs_shape["cls1"][1]
            return depth // (len(self.ratios) * len(self.scales)) if isinstance(depth, int) else None
        return None


@dataclass(frozen=True)
class Candidates:
    """One image's boxes before thresholds and NMS: corners in model-input pixels, scores, class ids
    (already offset to index the label set)."""

    boxes: np.ndarray  # [K, 4] float32 x0, y0, x1, y1
    scores: np.ndarray  # [K] float32
    classes: np.ndarray  # [K] int32


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _per_class(boxes: np.ndarray, scores: np.ndarray, threshold: float, skip: int, best: bool = False) -> Candidates:
    """Every (box, class) pair scoring above ``threshold`` (``best``: only each box's best class):
    boxes [K, 4], scores [K, C]."""
    mask = scores > threshold
    if 0 <= skip < scores.shape[1]:
        mask[:, skip] = False
    if best:
        mask &= scores >= scores.max(axis=1, keepdims=True)
    rows, cls = np.nonzero(mask)
    return Candidates(boxes[rows].astype(np.float32), scores[rows, cls].astype(np.float32), cls.astype(np.int32))


def decode(recipe: Recipe, outputs: dict[str, np.ndarray], size: tuple[int, int], threshold: float) -> list[Candidates]:
    """Per image of the batch, the candidates scoring above ``threshold``; ``size``: the model
    input's (height, width) in pixels."""
    h, w = size
    scale = np.array([w, h, w, h], dtype=np.float32)
    offset = recipe.class_offset
    if recipe.family == "ultraface":
        boxes, scores = outputs["boxes"], outputs["scores"]
        found = [_per_class(b * scale, s, threshold, recipe.background_class) for b, s in zip(boxes, scores)]
    elif recipe.family == "yolox":
        grid = outputs["grid"].astype(np.float32)
        cells, strides = [], []
        for stride in recipe.strides:
            ys, xs = np.meshgrid(np.arange(h // stride), np.arange(w // stride), indexing="ij")
            cells.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
            strides.append(np.full((cells[-1].shape[0], 1), stride))
        cell, stride = np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)
        if cell.shape[0] != grid.shape[1]:
            raise InvalidModelError(f"the yolox grid has {grid.shape[1]} anchors, but strides {list(recipe.strides)} over "
                                    f"a {h}x{w} input make {cell.shape[0]}")
        xy = (grid[..., :2] + cell) * stride
        wh = np.exp(grid[..., 2:4]) * stride
        corners = np.concatenate([xy - wh / 2, xy + wh / 2], axis=-1)
        scores = grid[..., 4:5] * grid[..., 5:]
        found = [_per_class(b, s, threshold, recipe.background_class) for b, s in zip(corners, scores)]
    elif recipe.family == "yolo_region":
        grid = outputs["grid"].astype(np.float32)
        n, depth, gh, gw = grid.shape
        a = len(recipe.anchors)
        g = grid.reshape(n, a, depth // a, gh, gw).transpose(0, 3, 4, 1, 2)  # [n, y, x, anchor, 5 + classes]
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        anchors = np.asarray(recipe.anchors, np.float32)
        cx = (_sigmoid(g[..., 0]) + xs[..., None]) * (w / gw)
        cy = (_sigmoid(g[..., 1]) + ys[..., None]) * (h / gh)
        bw = np.exp(g[..., 2]) * anchors[:, 0] * (w / gw)
        bh = np.exp(g[..., 3]) * anchors[:, 1] * (h / gh)
        logits = g[..., 5:]
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        scores = (_sigmoid(g[..., 4])[..., None] * probs).reshape(n, -1, probs.shape[-1])
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1).reshape(n, -1, 4)
        found = [_per_class(b, s, threshold, recipe.background_class, recipe.best_class)
                 for b, s in zip(corners, scores)]
    elif recipe.family == "yolov4":
        found = _yolov4(recipe, outputs, threshold)
    elif recipe.family == "yolov3_nms":
        found = _selected(recipe, outputs, threshold)
    elif recipe.family == "retinanet":
        found = _retinanet(recipe, outputs, threshold)
    else:
        found = _decoded(recipe, outputs, scale, threshold)
    if offset:
        found = [Candidates(c.boxes, c.scores, c.classes + offset) for c in found]
    return found


def _yolov4(recipe: Recipe, outputs: dict[str, np.ndarray], threshold: float) -> list[Candidates]:
    """YOLOv4's three heads [N, S, S, 3, 5 + C] (the TF export: objectness and classes already sigmoid):
    x, y = ((sigmoid(t) * s) - (s - 1) / 2 + cell) * stride, w, h = exp(t) * anchor (pixels)."""
    levels = []
    for k, role in enumerate(("grid", "grid2", "grid3")):
        head = outputs[role].astype(np.float32)
        n, gh, gw = head.shape[:3]
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        cell = np.stack([xs, ys], axis=-1)[:, :, None, :].astype(np.float32)
        scale, stride = recipe.xy_scale[k], recipe.strides[k]
        anchors = np.asarray(recipe.anchors[3 * k:3 * k + 3], np.float32)
        xy = ((_sigmoid(head[..., :2]) * scale) - 0.5 * (scale - 1) + cell) * stride
        wh = np.exp(head[..., 2:4]) * anchors
        corners = np.concatenate([xy - wh / 2, xy + wh / 2], axis=-1).reshape(n, -1, 4)
        levels.append((corners, (head[..., 4:5] * head[..., 5:]).reshape(n, corners.shape[1], -1)))
    boxes = np.concatenate([b for b, _ in levels], axis=1)
    scores = np.concatenate([s for _, s in levels], axis=1)
    return [_per_class(b, s, threshold, recipe.background_class, recipe.best_class) for b, s in zip(boxes, scores)]


def _selected(recipe: Recipe, outputs: dict[str, np.ndarray], threshold: float) -> list[Candidates]:
    """YOLOv3 of the ONNX Model Zoo: NMS ran in the graph; ``indices`` rows (batch, class, box) pick the
    boxes (y0, x0, y1, x1 in the original image, fed as ``image_shape``) and their scores [N, C, boxes]."""
    boxes, scores = outputs["boxes"], outputs["scores"]
    picked = outputs["indices"].reshape(-1, 3).astype(np.int64)
    found = []
    for i in range(boxes.shape[0]):
        mine = picked[picked[:, 0] == i]
        b = boxes[i, mine[:, 2]][:, [1, 0, 3, 2]].astype(np.float32)
        s = scores[i, mine[:, 1], mine[:, 2]].astype(np.float32)
        keep = s > threshold
        found.append(Candidates(b[keep], s[keep], mine[keep, 1].astype(np.int32)))
    return found


def _retina_anchors(stride: int, ratios: Sequence[float], scales: Sequence[float]) -> np.ndarray:
    """RetinaNet's anchors of one level, corners relative to a cell's top-left (retinanet-examples'
    ``generate_anchors``): for each scale, each ratio."""
    ratio = np.tile(np.asarray(ratios, np.float64), len(scales))
    scale = np.repeat(np.asarray(scales, np.float64), len(ratios))[:, None]
    ws = np.sqrt(stride * stride / ratio)
    dwh = np.stack([ws, ws * ratio], axis=1)
    return np.concatenate([0.5 * (stride - dwh * scale), 0.5 * (stride + dwh * scale)], axis=1)


def _retinanet(recipe: Recipe, outputs: dict[str, np.ndarray], threshold: float) -> list[Candidates]:
    """RetinaNet (retinanet-examples, the ONNX Model Zoo's export): per level a class head [N, A * C, H, W]
    (sigmoid applied in the graph) and a box head [N, A * 4, H, W] of deltas from the level's anchors;
    the best ``top_per_level`` above the threshold per level, boxes decoded as their ``delta2box`` (+1-pixel
    sizes) and clamped to the input."""
    found: list[list[Candidates]] = []
    for level, stride in enumerate(recipe.strides):
        cls_head = outputs[f"cls{level + 1}"].astype(np.float32)
        box_head = outputs[f"box{level + 1}"].astype(np.float32)
        n, depth, height, width = cls_head.shape
        anchors = _retina_anchors(stride, recipe.ratios, recipe.scales)
        a = anchors.shape[0]
        classes = depth // a
        for i in range(n):
            flat = cls_head[i].reshape(-1)
            keep = np.nonzero(flat >= threshold)[0]
            if recipe.top_per_level and keep.size > recipe.top_per_level:
                keep = keep[np.argsort(-flat[keep], kind="stable")[:recipe.top_per_level]]
            x, y = keep % width, (keep // width) % height
            c = (keep // (width * height)) % classes
            k = keep // (classes * height * width)
            deltas = box_head[i].reshape(a, 4, height, width)[k, :, y, x]
            grid = np.stack([x, y, x, y], axis=1) * stride + anchors[k]
            wh = grid[:, 2:] - grid[:, :2] + 1
            ctr = grid[:, :2] + 0.5 * wh
            pred_ctr = deltas[:, :2] * wh + ctr
            pred_wh = np.exp(deltas[:, 2:]) * wh
            top = np.array([width * stride - 1, height * stride - 1], np.float64)
            boxes = np.concatenate([np.clip(pred_ctr - 0.5 * pred_wh, 0, top), np.clip(pred_ctr + 0.5 * pred_wh - 1, 0, top)],
                                   axis=1)
            if level == 0:
                found.append([])
            found[i].append(Candidates(boxes.astype(np.float32), flat[keep].astype(np.float32), c.astype(np.int32)))
    return [Candidates(np.concatenate([c.boxes for c in per]), np.concatenate([c.scores for c in per]),
                       np.concatenate([c.classes for c in per])) for per in found]


def _decoded(recipe: Recipe, outputs: dict[str, np.ndarray], scale: np.ndarray, threshold: float) -> list[Candidates]:
    boxes, scores, classes = outputs["boxes"], outputs["scores"], outputs["classes"]
    if not recipe.batched:
        boxes, scores, classes = boxes[None], scores[None], classes[None]
    counts = outputs.get("count")
    found = []
    for i in range(boxes.shape[0]):
        k = int(counts.reshape(-1)[i]) if counts is not None else boxes.shape[1]
        b, s, c = boxes[i, :k].astype(np.float32), scores[i, :k].astype(np.float32), classes[i, :k]
        if recipe.box_format == "yxyx":
            b = b[:, [1, 0, 3, 2]]
        elif recipe.box_format == "cxcywh":
            b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
        if recipe.box_units == "normalized":
            b = b * scale
        keep = (s > threshold) & (np.rint(c) != recipe.background_class)
        found.append(Candidates(b[keep], s[keep], np.rint(c[keep]).astype(np.int32)))
    return found


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, *, pixel: bool = False,
        classes: np.ndarray | None = None) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best first: the best box stays, every box overlapping it
    by more than ``iou`` goes, repeat; with ``classes``, only boxes of one class suppress each other.
    ``pixel``: widths and heights count both end pixels (+1), as YOLOX's and RetinaNet's code does.

    OpenCV's ``dnn.NMSBoxes`` (C++, boxes in double precision) does the greedy loop: 10-15x faster
    than numpy's loop of one vectorised IoU per kept box on 200 boxes (benchmarks/RESULTS.md), with
    the same kept set. The +1 convention is exact with it: widening every box by one pixel adds one
    to each side of every intersection and to each size."""
    import cv2

    if not len(scores):
        return np.zeros(0, dtype=np.int64)
    one = 1.0 if pixel else 0.0
    b = boxes.astype(np.float64)
    rects = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0] + one, b[:, 3] - b[:, 1] + one])
    rects[:, 2:] = np.maximum(rects[:, 2:], 0.0)
    s = scores.astype(np.float32)
    # OpenCV takes boxes scoring above 0 (the decoders' thresholds, >= 0, were applied before)
    if classes is None:
        kept = cv2.dnn.NMSBoxes(rects, s, 0.0, float(iou))
    else:
        kept = cv2.dnn.NMSBoxesBatched(rects, s, classes.astype(np.int32), 0.0, float(iou))
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def select(found: Candidates, recipe: Recipe, iou: float, max_detections: int,
           allowed: "np.ndarray | None" = None) -> Candidates:
    """Class filter, the best ``candidates`` per class, NMS (per class or across classes, unless the
    graph ran it) and the ``max_detections`` best, sorted by score."""
    b, s, c = found.boxes, found.scores, found.classes
    if allowed is not None:
        keep = np.isin(c, allowed)
        b, s, c = b[keep], s[keep], c[keep]
    if recipe.candidates and s.size:
        order = np.lexsort((-s, c))  # by class, best first within each
        sorted_c = c[order]
        starts = np.searchsorted(sorted_c, sorted_c, side="left")
        rank = np.arange(order.size) - starts
        chosen = order[rank < recipe.candidates]
        b, s, c = b[chosen], s[chosen], c[chosen]
    if not recipe.nms_in_graph and s.size:
        keep = nms(b, s, iou, pixel=recipe.pixel_iou, classes=c if recipe.class_aware else None)
        b, s, c = b[keep], s[keep], c[keep]
    order = np.argsort(-s, kind="stable")[:max_detections]
    return Candidates(b[order], s[order], c[order])


def to_image(found: Candidates, transform: tuple[float, float, float, float]) -> Candidates:
    """The candidates with their boxes in the original image's pixels (``Preprocessor.box_transform``).
    NMS runs after this, as the authors' code does: an IoU with +1-pixel sizes depends on the scale."""
    sx, sy, ox, oy = transform
    b = (found.boxes - np.array([ox, oy, ox, oy], np.float32)) * np.array([sx, sy, sx, sy], np.float32)
    return Candidates(b.astype(np.float32), found.scores, found.classes)


def clip(found: Candidates, height: int, width: int) -> Candidates:
    """Boxes clipped to the image (the authors leave them overhanging; a crop cannot)."""
    b = found.boxes.copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, height)
    return Candidates(b, found.scores, found.classes)


def draw(pixels: np.ndarray, detections: Sequence[dict[str, Any]]) -> np.ndarray:
    """A copy of BGR ``pixels`` with each detection's box and ``label score`` drawn, one colour per class,
    line widths and text scaled to the image: what ``zoo detect --draw`` writes for people to look at."""
    import cv2

    out = pixels.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    scale = max(0.4, min(h, w) / 900)
    for d in sorted(detections, key=lambda d: d["score"]):  # the best drawn last, on top
        hue = (int(d["classIndex"]) * 47) % 180
        color = tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])
        p0, p1 = (int(round(d["x0"])), int(round(d["y0"]))), (int(round(d["x1"])), int(round(d["y1"])))
        cv2.rectangle(out, p0, p1, color, thick)
        text = f"{d.get('label') or d['classIndex']} {d['score']:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = max(p0[1] - th - base, 0)
        cv2.rectangle(out, (p0[0], top), (p0[0] + tw, top + th + base), color, -1)
        cv2.putText(out, text, (p0[0], top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
