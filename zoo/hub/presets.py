"""Named preprocessing recipes, as published by the models' authors."""

from __future__ import annotations

import copy
from typing import Any

from zoo.errors import ConfigError

IMAGENET: dict[str, Any] = {
    "color_order": "RGB",
    "resize": {"mode": "shorter_side", "size": 256, "interpolation": "bilinear"},
    "crop": {"mode": "center", "size": [224, 224]},
    "scale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

# EfficientNet-Lite: same geometry (the zoo's reference code resizes by 224/0.875), (x - 127) / 128.
EFFICIENTNET_LITE: dict[str, Any] = {
    "color_order": "RGB",
    "resize": {"mode": "shorter_side", "size": 256, "interpolation": "bilinear"},
    "crop": {"mode": "center", "size": [224, 224]},
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
}

PRESETS: dict[str, dict[str, Any] | None] = {
    "imagenet": IMAGENET,
    "efficientnet-lite": EFFICIENTNET_LITE,
    "none": None,
}


def preset(name_or_spec: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a named preset, or the given dict unchanged (validated later by the schema)."""
    if name_or_spec is None or isinstance(name_or_spec, dict):
        return name_or_spec
    try:
        return copy.deepcopy(PRESETS[name_or_spec])
    except KeyError:
        raise ConfigError(f"unknown preprocess preset {name_or_spec!r}; choose one of {', '.join(PRESETS)}") from None


# -- detectors: (preprocess, detection, label set) as their authors publish them, for an input of (height, width)
def _detector_pixels(size: tuple[int, int], color: str, mode: str = "exact", scale: float = 1.0,
                     mean: float = 0.0, std: float = 1.0, interpolation: str = "opencv-bilinear",
                     **letterbox: Any) -> dict[str, Any]:
    return {"color_order": color, "resize": {"mode": mode, "size": [int(size[0]), int(size[1])],
                                              "interpolation": interpolation, **letterbox},
            "crop": None, "scale": scale, "mean": [mean] * 3, "std": [std] * 3}


def detector(family: str, size: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """The recipe of a detector family for a model input of ``size`` (height, width):
    ``zoo add FILE --detector yolox`` and the built-in registry's detector entries use these.

    - ``yolox`` (Megvii's demo ``preproc``): BGR, letterbox at the top left, padding 114, 0-255 floats;
    - ``ultraface`` (the Ultra-Light detectors' ``run_ultra_light_onnx.py``): RGB, plain resize, (x - 127) / 128;
    - ``yolov2-voc`` / ``yolov2-coco``: RGB, plain resize; the CoreML tiny-YOLOv2 scales 0-255 inside its
      graph, the PyTorch YOLOv2 takes x / 255 (the anchors are Darknet's, in 32-pixel cells);
    - ``ssd-resnet34`` (MLPerf): RGB, Pillow bilinear, ImageNet mean/std, labels 1..80;
    - ``yolov3`` (the ONNX Model Zoo's keras-yolo3 export): RGB, Pillow bicubic letterbox centred on 128, x / 255;
      the graph runs NMS and takes each image's size as a second input;
    - ``yolov4`` (the ONNX Model Zoo's TF export): RGB, letterbox centred on 128, x / 255, NHWC; three heads
      with Darknet's anchors (pixels) and x/y scales 1.2, 1.1, 1.05;
    - ``faster-rcnn`` (the ONNX Model Zoo's Faster and Mask R-CNN, from maskrcnn-benchmark): one image without a
      batch axis, its shorter side resized to 800 (Pillow bilinear), BGR minus the Caffe means, padded with zeros
      to a multiple of 32; boxes in the resized image's pixels, labels 1..80 (0 is the background);
    - ``retinanet`` (NVIDIA's retinanet-examples, the ONNX Model Zoo's export): RGB, ImageNet mean/std; five class
      heads (sigmoid in the graph) and five box-delta heads over 9 anchors per cell, NMS in the input's pixels;
    - ``tf-ssd`` (TF Object Detection API): uint8 RGB at 300x300 (the graph resizes to 300 itself),
      normalised ymin/xmin/ymax/xmax boxes, COCO category ids, ``num_detections``."""
    if family == "yolox":
        return (_detector_pixels(size, "BGR", "letterbox", pad=114, align="top_left"),
                {"family": "yolox"}, "coco-80")
    if family == "ultraface":
        return _detector_pixels(size, "RGB", mean=127.0, std=128.0), {"family": "ultraface"}, "face"
    if family == "yolov2-voc":
        return (_detector_pixels(size, "RGB"), {"family": "yolo_region", "anchors": [
            [1.08, 1.19], [3.42, 4.41], [6.63, 11.38], [9.42, 5.11], [16.62, 10.52]], "class_aware": False,
            "score_threshold": 0.3, "nms_iou": 0.5}, "voc-20")
    if family == "yolov2-coco":
        return (_detector_pixels(size, "RGB", scale=1.0 / 255.0), {"family": "yolo_region", "anchors": [
            [0.57273, 0.677385], [1.87446, 2.06253], [3.33843, 5.47434], [7.88282, 3.52778], [9.77052, 9.16828]],
            "class_aware": False, "score_threshold": 0.5, "nms_iou": 0.4}, "coco-80")
    if family == "ssd-resnet34":
        return (_detector_pixels(size, "RGB", interpolation="bilinear") | {
            "scale": 1.0 / 255.0, "mean": list(IMAGENET["mean"]), "std": list(IMAGENET["std"])},
            {"family": "decoded", "outputs": {"boxes": "bboxes", "scores": "scores", "classes": "labels"},
             "class_offset": -1, "score_threshold": 0.5}, "coco-80")
    if family == "yolov3":
        return (_detector_pixels(size, "RGB", "letterbox", scale=1.0 / 255.0, interpolation="bicubic", pad=128,
                                 align="center"), {"family": "yolov3_nms"}, "coco-80")
    if family == "yolov4":
        return (_detector_pixels(size, "RGB", "letterbox", scale=1.0 / 255.0, pad=128, align="center"),
                {"family": "yolov4", "anchors": [[12, 16], [19, 36], [40, 28], [36, 75], [76, 55], [72, 146],
                                                 [142, 110], [192, 243], [459, 401]],
                 "strides": [8, 16, 32], "xy_scale": [1.2, 1.1, 1.05]}, "coco-80")
    if family == "faster-rcnn":  # maskrcnn-benchmark exports: outputs boxes, labels, scores (+ masks)
        pixels = {"color_order": "BGR", "resize": {"mode": "shorter_side", "size": 800, "interpolation": "bilinear",
                                                  "pad_multiple": 32},
                  "crop": None, "scale": 1.0, "mean": [102.9801, 115.9465, 122.7717], "std": [1.0, 1.0, 1.0]}
        return pixels, {"family": "decoded", "batched": False, "box_units": "input_pixels", "class_offset": -1,
                        "score_threshold": 0.7}, "coco-80"
    if family == "retinanet":  # retinanet-examples' ONNX export: RGB, ImageNet mean/std, sigmoid in the graph
        return (_detector_pixels(size, "RGB", interpolation="bilinear") | {
            "scale": 1.0 / 255.0, "mean": list(IMAGENET["mean"]), "std": list(IMAGENET["std"])},
            {"family": "retinanet"}, "coco-80")
    if family == "tf-ssd":
        return (_detector_pixels((300, 300), "RGB"), {"family": "decoded", "box_format": "yxyx", "score_threshold": 0.5},
                "coco-91")
    raise ConfigError(f"unknown detector family {family!r}; choose one of {', '.join(DETECTOR_FAMILIES)}")


DETECTOR_FAMILIES = ("yolox", "ultraface", "yolov2-voc", "yolov2-coco", "yolov3", "yolov4", "ssd-resnet34", "tf-ssd",
                     "faster-rcnn", "retinanet")
