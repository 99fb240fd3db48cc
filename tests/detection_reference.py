"""The detector authors' published postprocessing, rewritten from their demo code, independent of sparkzoo.

Nothing here imports ``zoo``: these functions are what sparkzoo's object_detector is compared with.

- Ultra-Light-Fast-Generic-Face-Detector-1MB (``run_ultra_light_onnx.py`` and ``vision/utils/box_utils_numpy.py``):
  cv2 BGR -> RGB, ``cv2.resize`` to the input, (x - 127) / 128; per class above the threshold, ``hard_nms``
  over the best 200 (IoU with an epsilon of 1e-5, in normalised coordinates), boxes scaled to the image;
- YOLOX (``demo/ONNXRuntime/onnx_inference.py`` and ``yolox/utils/demo_utils.py``): ``preproc`` (letterbox
  at the top left, padding 114, BGR 0-255), ``demo_postprocess`` (grids and strides), boxes divided by the
  ratio, ``multiclass_nms`` class-aware with the +1-pixel ``nms``;
- YOLOv2's region layer (Darknet's ``get_region_boxes`` as the CoreML and PyTorch ports write it), one cell
  and anchor at a time: the most literal reading, slow on purpose;
- the TF Object Detection API's outputs (``num_detections``, ymin/xmin/ymax/xmax normalised).

The authors leave boxes overhanging the image; sparkzoo clips them, so :func:`clip` is applied to these
references before comparing (said where it is used).
"""

from __future__ import annotations

import cv2
import numpy as np


# -- Ultra-Light -------------------------------------------------------------------------------------------
def _area_of(left_top, right_bottom):
    hw = np.clip(right_bottom - left_top, 0.0, None)
    return hw[..., 0] * hw[..., 1]


def _iou_of(boxes0, boxes1, eps=1e-5):
    overlap_left_top = np.maximum(boxes0[..., :2], boxes1[..., :2])
    overlap_right_bottom = np.minimum(boxes0[..., 2:], boxes1[..., 2:])
    overlap_area = _area_of(overlap_left_top, overlap_right_bottom)
    area0 = _area_of(boxes0[..., :2], boxes0[..., 2:])
    area1 = _area_of(boxes1[..., :2], boxes1[..., 2:])
    return overlap_area / (area0 + area1 - overlap_area + eps)


def _hard_nms(box_scores, iou_threshold, top_k=-1, candidate_size=200):
    scores = box_scores[:, -1]
    boxes = box_scores[:, :-1]
    picked = []
    indexes = np.argsort(scores)
    indexes = indexes[-candidate_size:]
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        current_box = boxes[current, :]
        indexes = indexes[:-1]
        rest_boxes = boxes[indexes, :]
        iou = _iou_of(rest_boxes, np.expand_dims(current_box, axis=0))
        indexes = indexes[iou <= iou_threshold]
    return box_scores[picked, :]


def ultraface(session, path: str, size: tuple[int, int], prob_threshold=0.7, iou_threshold=0.3):
    """[(label index, score, x0, y0, x1, y1)] of one image, as the authors' demo computes them."""
    orig_image = cv2.imread(path)
    image = cv2.cvtColor(orig_image, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (size[1], size[0]))
    image = (image - np.array([127, 127, 127])) / 128
    image = np.transpose(image, [2, 0, 1])
    image = np.expand_dims(image, axis=0).astype(np.float32)
    confidences, boxes = session.run(None, {session.get_inputs()[0].name: image})
    confidences, boxes = confidences[0], boxes[0]
    height, width = orig_image.shape[:2]
    picked_box_probs, picked_labels = [], []
    for class_index in range(1, confidences.shape[1]):
        probs = confidences[:, class_index]
        mask = probs > prob_threshold
        probs = probs[mask]
        if probs.shape[0] == 0:
            continue
        subset_boxes = boxes[mask, :]
        box_probs = np.concatenate([subset_boxes, probs.reshape(-1, 1)], axis=1)
        box_probs = _hard_nms(box_probs, iou_threshold=iou_threshold)
        picked_box_probs.append(box_probs)
        picked_labels.extend([class_index] * box_probs.shape[0])
    if not picked_box_probs:
        return []
    picked = np.concatenate(picked_box_probs)
    picked[:, 0] *= width
    picked[:, 1] *= height
    picked[:, 2] *= width
    picked[:, 3] *= height
    return [(label, float(p[4]), *map(float, p[:4])) for label, p in zip(picked_labels, picked)]


# -- YOLOX ---------------------------------------------------------------------------------------------------
def _preproc(img, input_size, swap=(2, 0, 1)):
    padded_img = np.ones((input_size[0], input_size[1], 3), dtype=np.uint8) * 114
    r = min(input_size[0] / img.shape[0], input_size[1] / img.shape[1])
    resized_img = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)),
                             interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded_img[: int(img.shape[0] * r), : int(img.shape[1] * r)] = resized_img
    padded_img = padded_img.transpose(swap)
    return np.ascontiguousarray(padded_img, dtype=np.float32), r


def _demo_postprocess(outputs, img_size):
    grids, expanded_strides = [], []
    strides = [8, 16, 32]
    hsizes = [img_size[0] // stride for stride in strides]
    wsizes = [img_size[1] // stride for stride in strides]
    for hsize, wsize, stride in zip(hsizes, wsizes, strides):
        xv, yv = np.meshgrid(np.arange(wsize), np.arange(hsize))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        expanded_strides.append(np.full((*grid.shape[:2], 1), stride))
    grids = np.concatenate(grids, 1)
    expanded_strides = np.concatenate(expanded_strides, 1)
    outputs[..., :2] = (outputs[..., :2] + grids) * expanded_strides
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * expanded_strides
    return outputs


def _nms(boxes, scores, nms_thr):
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        inds = np.where(ovr <= nms_thr)[0]
        order = order[inds + 1]
    return keep


def _multiclass_nms(boxes, scores, nms_thr, score_thr):
    final_dets = []
    for cls_ind in range(scores.shape[1]):
        cls_scores = scores[:, cls_ind]
        valid_score_mask = cls_scores > score_thr
        if valid_score_mask.sum() == 0:
            continue
        valid_scores = cls_scores[valid_score_mask]
        valid_boxes = boxes[valid_score_mask]
        keep = _nms(valid_boxes, valid_scores, nms_thr)
        if keep:
            cls_inds = np.ones((len(keep), 1)) * cls_ind
            final_dets.append(np.concatenate([valid_boxes[keep], valid_scores[keep, None], cls_inds], 1))
    return np.concatenate(final_dets, 0) if final_dets else None


def yolox(session, path: str, size=(416, 416), score_thr=0.3, nms_thr=0.45):
    """[(class index, score, x0, y0, x1, y1)] of one image, as YOLOX's ONNX Runtime demo computes them."""
    origin_img = cv2.imread(path)
    img, ratio = _preproc(origin_img, size)
    output = session.run(None, {session.get_inputs()[0].name: img[None, :, :, :]})
    predictions = _demo_postprocess(output[0], size)[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    boxes_xyxy = np.ones_like(boxes)
    boxes_xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.
    boxes_xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.
    boxes_xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.
    boxes_xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.
    boxes_xyxy /= ratio
    dets = _multiclass_nms(boxes_xyxy, scores, nms_thr=nms_thr, score_thr=score_thr)
    if dets is None:
        return []
    return [(int(d[5]), float(d[4]), *map(float, d[:4])) for d in dets]


# -- YOLOv2 region layer, one cell and anchor at a time ----------------------------------------------------------
def yolo_region(grid, anchors, size, threshold, nms_thr, image_hw):
    """[(class index, score, x0, y0, x1, y1)] from one image's [A * (5 + C), S, S] output; a box keeps only
    its best class; class-agnostic NMS (the CoreML tiny-YOLOv2 demo's)."""
    a = len(anchors)
    depth, gh, gw = grid.shape
    classes = depth // a - 5
    h, w = size
    found = []
    for cy in range(gh):
        for cx in range(gw):
            for k in range(a):
                base = k * (5 + classes)
                tx, ty, tw, th, to = (float(grid[base + j, cy, cx]) for j in range(5))
                x = (cx + 1 / (1 + np.exp(-tx))) * w / gw
                y = (cy + 1 / (1 + np.exp(-ty))) * h / gh
                bw = np.exp(tw) * anchors[k][0] * w / gw
                bh = np.exp(th) * anchors[k][1] * h / gh
                logits = [float(grid[base + 5 + c, cy, cx]) for c in range(classes)]
                top = max(logits)
                exps = [np.exp(v - top) for v in logits]
                best = int(np.argmax(exps))
                score = (1 / (1 + np.exp(-to))) * exps[best] / sum(exps)
                if score > threshold:
                    found.append((best, score, x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2))
    found.sort(key=lambda f: -f[1])
    kept = []
    for f in found:
        if all(_iou(f[2:], g[2:]) <= nms_thr for g in kept):
            kept.append(f)
    sy, sx = image_hw[0] / h, image_hw[1] / w
    return [(c, s, x0 * sx, y0 * sy, x1 * sx, y1 * sy) for c, s, x0, y0, x1, y1 in kept]


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-5)


# -- comparing -----------------------------------------------------------------------------------------------------
def clip(dets, height, width):
    return [(c, s, min(max(x0, 0), width), min(max(y0, 0), height), min(max(x1, 0), width), min(max(y1, 0), height))
            for c, s, x0, y0, x1, y1 in dets]


def iou(a, b) -> float:
    return _iou(a, b)


def match(ours, reference) -> tuple[int, float, float]:
    """(matched count, smallest IoU among matches, largest score difference) pairing each reference box with
    the best-overlapping unused box of the same class."""
    used: set[int] = set()
    worst_iou, worst_score, matched = 1.0, 0.0, 0
    for c, s, *box in sorted(reference, key=lambda r: -r[1]):
        best, best_iou = None, 0.0
        for j, (oc, os_, *obox) in enumerate(ours):
            if j in used or oc != c:
                continue
            # a box clamped flat against the image's edge has no area: equal corners are a match
            v = 1.0 if np.allclose(box, obox, atol=1e-3) else _iou(box, obox)
            if v > best_iou:
                best, best_iou = j, v
        if best is None:
            continue
        used.add(best)
        matched += 1
        worst_iou = min(worst_iou, best_iou)
        worst_score = max(worst_score, abs(ours[best][1] - s))
    return matched, worst_iou, worst_score


# -- YOLOv4 (the ONNX Model Zoo's notebook: postprocess_bbbox, postprocess_boxes, nms) --------------------------------
def yolov4(heads, anchors, strides, xyscale, org_img_shape, input_size=416, score_threshold=0.25, iou_threshold=0.213):
    """[(class index, score, x0, y0, x1, y1)] from one image's three heads [1, S, S, 3, 85]."""
    pred_bbox = []
    for i, pred in enumerate(heads):
        pred = pred.astype(np.float64).copy()
        output_size = pred.shape[1]
        conv_raw_dxdy = pred[:, :, :, :, 0:2]
        conv_raw_dwdh = pred[:, :, :, :, 2:4]
        xy_grid = np.meshgrid(np.arange(output_size), np.arange(output_size))
        xy_grid = np.expand_dims(np.stack(xy_grid, axis=-1), axis=2)
        xy_grid = np.tile(np.expand_dims(xy_grid, axis=0), [1, 1, 1, 3, 1]).astype(float)
        pred_xy = ((1 / (1 + np.exp(-conv_raw_dxdy)) * xyscale[i]) - 0.5 * (xyscale[i] - 1) + xy_grid) * strides[i]
        pred_wh = np.exp(conv_raw_dwdh) * np.asarray(anchors[3 * i:3 * i + 3])
        pred[:, :, :, :, 0:4] = np.concatenate([pred_xy, pred_wh], axis=-1)
        pred_bbox.append(np.reshape(pred, (-1, pred.shape[-1])))
    pred_bbox = np.concatenate(pred_bbox, axis=0)
    pred_xywh, pred_conf, pred_prob = pred_bbox[:, 0:4], pred_bbox[:, 4], pred_bbox[:, 5:]
    pred_coor = np.concatenate([pred_xywh[:, :2] - pred_xywh[:, 2:] * 0.5, pred_xywh[:, :2] + pred_xywh[:, 2:] * 0.5],
                               axis=-1)
    org_h, org_w = org_img_shape
    resize_ratio = min(input_size / org_w, input_size / org_h)
    dw = (input_size - resize_ratio * org_w) / 2
    dh = (input_size - resize_ratio * org_h) / 2
    pred_coor[:, 0::2] = 1.0 * (pred_coor[:, 0::2] - dw) / resize_ratio
    pred_coor[:, 1::2] = 1.0 * (pred_coor[:, 1::2] - dh) / resize_ratio
    pred_coor = np.concatenate([np.maximum(pred_coor[:, :2], [0, 0]),
                                np.minimum(pred_coor[:, 2:], [org_w - 1, org_h - 1])], axis=-1)
    invalid_mask = np.logical_or((pred_coor[:, 0] > pred_coor[:, 2]), (pred_coor[:, 1] > pred_coor[:, 3]))
    pred_coor[invalid_mask] = 0
    bboxes_scale = np.sqrt(np.multiply.reduce(pred_coor[:, 2:4] - pred_coor[:, 0:2], axis=-1))
    scale_mask = np.logical_and((0 < bboxes_scale), (bboxes_scale < np.inf))
    classes = np.argmax(pred_prob, axis=-1)
    scores = pred_conf * pred_prob[np.arange(len(pred_coor)), classes]
    mask = np.logical_and(scale_mask, scores > score_threshold)
    bboxes = np.concatenate([pred_coor[mask], scores[mask][:, np.newaxis], classes[mask][:, np.newaxis]], axis=-1)
    best_bboxes = []
    for cls in list(set(bboxes[:, 5])):
        cls_bboxes = bboxes[bboxes[:, 5] == cls]
        while len(cls_bboxes) > 0:
            max_ind = np.argmax(cls_bboxes[:, 4])
            best_bbox = cls_bboxes[max_ind]
            best_bboxes.append(best_bbox)
            cls_bboxes = np.concatenate([cls_bboxes[: max_ind], cls_bboxes[max_ind + 1:]])
            boxes1, boxes2 = best_bbox[np.newaxis, :4], cls_bboxes[:, :4]
            area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
            area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
            left_up = np.maximum(boxes1[..., :2], boxes2[..., :2])
            right_down = np.minimum(boxes1[..., 2:], boxes2[..., 2:])
            inter = np.maximum(right_down - left_up, 0.0)
            inter_area = inter[..., 0] * inter[..., 1]
            iou = np.maximum(1.0 * inter_area / (area1 + area2 - inter_area), np.finfo(np.float32).eps)
            weight = np.ones((len(iou),), dtype=np.float32)
            weight[iou > iou_threshold] = 0.0
            cls_bboxes[:, 4] = cls_bboxes[:, 4] * weight
            cls_bboxes = cls_bboxes[cls_bboxes[:, 4] > 0.]
    return [(int(b[5]), float(b[4]), *map(float, b[:4])) for b in best_bboxes]


# -- YOLOv3 of the ONNX Model Zoo (its README's loop over the selected indices) ------------------------------------
def yolov3_selected(boxes, scores, indices):
    out = []
    for idx_ in indices.reshape(-1, 3):
        y0, x0, y1, x1 = boxes[(idx_[0], idx_[2])]
        out.append((int(idx_[1]), float(scores[tuple(idx_)]), float(x0), float(y0), float(x1), float(y1)))
    return out


# -- Faster R-CNN of the ONNX Model Zoo (its README's preprocess and display) ------------------------------------
def faster_rcnn_input(path: str):
    """(padded BGR input [3, H, W], ratio) as the README's ``preprocess`` makes it from a file."""
    import math

    from PIL import Image

    image = Image.open(path).convert("RGB")
    ratio = 800.0 / min(image.size[0], image.size[1])
    image = image.resize((int(ratio * image.size[0]), int(ratio * image.size[1])), Image.BILINEAR)
    image = np.array(image)[:, :, [2, 1, 0]].astype("float32")
    image = np.transpose(image, [2, 0, 1])
    mean_vec = np.array([102.9801, 115.9465, 122.7717])
    for i in range(image.shape[0]):
        image[i, :, :] = image[i, :, :] - mean_vec[i]
    padded_h = int(math.ceil(image.shape[1] / 32) * 32)
    padded_w = int(math.ceil(image.shape[2] / 32) * 32)
    padded_image = np.zeros((3, padded_h, padded_w), dtype=np.float32)
    padded_image[:, :image.shape[1], :image.shape[2]] = image
    return padded_image, ratio


def faster_rcnn(boxes, labels, scores, ratio, score_threshold=0.7):
    """[(label - 1, score, x0, y0, x1, y1)]: the README's display loop (labels count the background as 0)."""
    boxes = boxes / ratio
    return [(int(label) - 1, float(score), *map(float, box)) for box, label, score in zip(boxes, labels, scores)
            if score > score_threshold]


# -- RetinaNet (NVIDIA retinanet-examples: generate_anchors, decode, delta2box, nms) -------------------------------
def _generate_anchors(stride, ratio_vals, scales_vals):
    scales = np.tile(np.asarray(scales_vals, np.float64), (len(ratio_vals), 1)).T.reshape(-1, 1)
    ratios = np.asarray(list(ratio_vals) * len(scales_vals), np.float64)
    wh = np.tile(np.array([stride], np.float64), (len(ratios), 2))
    ws = np.sqrt(wh[:, 0] * wh[:, 1] / ratios)
    dwh = np.stack([ws, ws * ratios], axis=1)
    xy1 = 0.5 * (wh - dwh * scales)
    xy2 = 0.5 * (wh + dwh * scales)
    return np.concatenate([xy1, xy2], axis=1)


def _delta2box(deltas, anchors, size, stride):
    anchors_wh = anchors[:, 2:] - anchors[:, :2] + 1
    ctr = anchors[:, :2] + 0.5 * anchors_wh
    pred_ctr = deltas[:, :2] * anchors_wh + ctr
    pred_wh = np.exp(deltas[:, 2:]) * anchors_wh
    m = np.zeros([2])
    big = np.array(size, np.float64) * stride - 1
    return np.concatenate([np.maximum(m, np.minimum(pred_ctr - 0.5 * pred_wh, big)),
                           np.maximum(m, np.minimum(pred_ctr + 0.5 * pred_wh - 1, big))], axis=1)


def retinanet(cls_heads, box_heads, strides, ratios, scales, image_scale, threshold=0.05, top_n=1000, nms=0.5,
              ndetections=100):
    """[(class index, score, x0, y0, x1, y1)] of one image: per level the top ``top_n`` scores above the
    threshold decoded from their anchors, class-wise NMS with +1-pixel areas in the input's pixels, the
    best ``ndetections``, then scaled to the image by ``image_scale`` (sx, sy)."""
    all_scores, all_boxes, all_classes = [], [], []
    for cls_head, box_head, stride in zip(cls_heads, box_heads, strides):
        anchors = _generate_anchors(stride, ratios, scales)
        num_anchors = anchors.shape[0]
        num_classes = cls_head.shape[0] // num_anchors
        height, width = cls_head.shape[-2:]
        flat = cls_head.reshape(-1)
        keep = np.nonzero(flat >= threshold)[0]
        order = np.argsort(-flat[keep], kind="stable")[:min(top_n, keep.size)]
        indices = keep[order]
        classes = (indices // width // height) % num_classes
        x = indices % width
        y = (indices // width) % height
        a = indices // num_classes // height // width
        deltas = box_head.reshape(num_anchors, 4, height, width)[a, :, y, x]
        grid = np.stack([x, y, x, y], 1) * stride + anchors[a, :]
        all_boxes.append(_delta2box(deltas, grid, [width, height], stride))
        all_scores.append(flat[indices])
        all_classes.append(classes)
    scores, boxes, classes = np.concatenate(all_scores), np.concatenate(all_boxes), np.concatenate(all_classes)
    order = np.argsort(-scores, kind="stable")
    scores, boxes, classes = scores[order], boxes[order], classes[order]
    keep = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not keep[i]:
            continue
        for j in range(i + 1, len(scores)):
            if classes[j] != classes[i] or not keep[j]:
                continue
            xy1 = np.maximum(boxes[i, :2], boxes[j, :2])
            xy2 = np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = np.prod(np.clip(xy2 - xy1 + 1, 0, None))
            area_i = np.prod(boxes[i, 2:] - boxes[i, :2] + 1)
            area_j = np.prod(boxes[j, 2:] - boxes[j, :2] + 1)
            if inter / (area_i + area_j - inter) > nms:
                keep[j] = False
    sx, sy = image_scale
    return [(int(c), float(s), b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
            for c, s, b in list(zip(classes[keep], scores[keep], boxes[keep]))[:ndetections]]
