"""Regenerate registry.json from the ONNX Model Zoo manifest (real upstream sha256 and sizes).

    python scripts/build_registry.py ../shared/reference/onnx-model-zoo-manifest.json

Every model of the manifest (184: classification, detection and segmentation, text, face and body
analysis, style transfer, super-resolution) gets an entry with its task, so `zoo ls --task` shows
what exists and `zoo pull` fetches any of them by name. The families whose preprocessing is
published and that a sparkzoo image stage runs today (:data:`RUNNABLE`) also carry it; the others
have ``preprocess: null`` (pass one to the stage, or use ``onnx_model``). The manifest is the hub
manifest of the ONNX Model Zoo; since the zoo left Git LFS its files are served from the Hugging
Face Hub as onnxmodelzoo/<stem>/<stem>.onnx, with the old GitHub path kept as a second source.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.hub.presets import EFFICIENTNET_LITE, IMAGENET, detector  # noqa: E402

GITHUB = "https://github.com/onnx/models/raw/main/"
# The entries sparkzoo has always had: (file stem, aliases, description, preprocess)
CHOSEN = [
    ("resnet50-v1-12", ["resnet50", "resnet50-v1"], "ResNet-50 v1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("resnet50-v1-12-int8", ["resnet50-int8"], "ResNet-50 v1, int8 quantized (QLinear ops), ImageNet-1k", IMAGENET),
    ("resnet18-v1-7", ["resnet18"], "ResNet-18 v1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("resnet34-v1-7", ["resnet34"], "ResNet-34 v1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("resnet101-v1-7", ["resnet101"], "ResNet-101 v1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("resnet152-v1-7", ["resnet152"], "ResNet-152 v1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("mobilenetv2-12", ["mobilenetv2", "mobilenet-v2"], "MobileNet v2 1.0 (fp32), ImageNet-1k classifier", IMAGENET),
    ("mobilenetv2-12-int8", ["mobilenetv2-int8"], "MobileNet v2 1.0, int8 quantized (QLinear ops), ImageNet-1k", IMAGENET),
    ("squeezenet1.1-7", ["squeezenet", "squeezenet1.1"], "SqueezeNet 1.1 (fp32), ImageNet-1k classifier", IMAGENET),
    ("densenet-12", ["densenet121", "densenet-121"], "DenseNet-121 (fp32), ImageNet-1k classifier", IMAGENET),
    ("densenet-12-int8", ["densenet121-int8"], "DenseNet-121, int8 quantized, ImageNet-1k classifier", IMAGENET),
    ("vgg16-12", ["vgg16"], "VGG-16 (fp32), ImageNet-1k classifier", IMAGENET),
    ("vgg16-12-int8", ["vgg16-int8"], "VGG-16, int8 quantized, ImageNet-1k classifier", IMAGENET),
    ("shufflenet-v2-12", ["shufflenet-v2", "shufflenet"], "ShuffleNet v2 (fp32), ImageNet-1k classifier", IMAGENET),
    ("shufflenet-v2-12-int8", ["shufflenet-v2-int8"], "ShuffleNet v2, int8 quantized, ImageNet-1k classifier", IMAGENET),
    ("efficientnet-lite4-11", ["efficientnet-lite4"], "EfficientNet-Lite4 (fp32), ImageNet-1k, softmax output", EFFICIENTNET_LITE),
    ("efficientnet-lite4-11-int8", ["efficientnet-lite4-int8"], "EfficientNet-Lite4, int8 quantized, softmax output", EFFICIENTNET_LITE),
]
DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}
SOFTMAX_OUTPUT = re.compile(r"^efficientnet-lite4")  # the other classifiers output logits
# Preprocessing sparkzoo's image stages can run, by file stem. ImageNet-style recipe (RGB, shorter side
# 256, centre crop 224, ImageNet mean/std) as published for ResNet v1/v2, MobileNet v2, SqueezeNet 1.1,
# VGG (MXNet/Gluon exports), DenseNet-121 and ShuffleNet v2; EfficientNet-Lite4 its own; ArcFace takes
# aligned 112x112 RGB face crops with raw 0-255 values (its published inference code).
ARCFACE = {"color_order": "RGB", "resize": {"mode": "exact", "size": [112, 112], "interpolation": "bilinear"},
           "crop": None, "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
RUNNABLE = [
    (re.compile(r"^resnet\d+-v[12]-\d+(-int8|-qdq)?$"), IMAGENET),
    (re.compile(r"^mobilenetv2-"), IMAGENET),
    (re.compile(r"^squeezenet1\.1-"), IMAGENET),
    (re.compile(r"^vgg(16|19)(-bn)?-\d+(-int8|-qdq)?$"), IMAGENET),
    (re.compile(r"^densenet-"), IMAGENET),
    (re.compile(r"^shufflenet-v2-"), IMAGENET),
    (re.compile(r"^efficientnet-lite4-"), EFFICIENTNET_LITE),
    (re.compile(r"^arcfaceresnet100-"), ARCFACE),
]
# Detectors sparkzoo's object_detector runs, by file stem: the recipe family of zoo.hub.presets.detector.
DETECTORS = [
    (re.compile(r"^version-RFB-(320|640)(-int8)?$"), "ultraface"),
    (re.compile(r"^ssd-1[02](-int8|-qdq)?$"), "ssd-resnet34"),
    (re.compile(r"^ssd_mobilenet_v1_1[023]"), "tf-ssd"),
    (re.compile(r"^tinyyolov2-"), "yolov2-voc"),
    (re.compile(r"^yolov2-coco-"), "yolov2-coco"),
    (re.compile(r"^(tiny-)?yolov3-1[012]"), "yolov3"),
    (re.compile(r"^yolov4$"), "yolov4"),
    (re.compile(r"^(Faster|Mask)RCNN-1[02]"), "faster-rcnn"),
    (re.compile(r"^retinanet-9$"), "retinanet"),
]
RCNN_INPUT = {"name": "image", "layout": "NCHW", "shape": [3, None, None], "dtype": "float32"}
# YOLOv3's two inputs (the image, its size): the image input by name, its size the authors' 416
YOLOV3_INPUT = {"name": "input_1", "layout": "NCHW", "shape": [None, 3, None, None], "dtype": "float32"}
TF_OUTPUTS = {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
              "count": "num_detections"}
# task by the manifest's folder, then by its family tag
TASKS = {"vision/classification": "image-classification", "vision/object_detection_segmentation": "object-detection",
         "vision/style_transfer": "style-transfer", "vision/super_resolution": "super-resolution",
         "text/machine_comprehension": "question-answering", "vision/body_analysis": "image-classification"}
FAMILY_TASKS = {"fcn": "image-segmentation", "mask-rcnn": "image-segmentation", "duc": "image-segmentation",
                "gpt-2": "text-generation", "t5": "text-generation", "roberta": "feature-extraction",
                "arcface": "feature-extraction", "ultraface": "object-detection"}
# models whose family holds several tasks: the sentiment head and the encoder alone
MODEL_TASKS = [(re.compile(r"^roberta-sequence-classification-"), "text-classification"),
               (re.compile(r"^t5-encoder-"), "feature-extraction")]
# licences as the ONNX Model Zoo's model cards state them, by family tag (default Apache-2.0)
LICENSES = {"gpt-2": "MIT", "roberta": "MIT", "bidirectional attention flow": "MIT", "yolov2-coco": "MIT",
            "tiny-yolov2": "MIT", "yolov3": "MIT", "tiny-yolov3": "MIT", "yolov4": "MIT", "faster-rcnn": "MIT",
            "mask-rcnn": "MIT", "ultraface": "MIT", "emotion ferplus": "MIT", "mnist": "MIT", "fcn": "BSD-3-Clause",
            "retinanet": "BSD-3-Clause", "fast neural style": "BSD-3-Clause", "sub pixel cnn 2016": "BSD-3-Clause",
            "alexnet": "BSD-3-Clause", "caffenet": "BSD-3-Clause", "rcnn ilsvrc13": "BSD-3-Clause",
            "googlenet": "BSD-3-Clause"}


def _dims(shape):
    return [d if isinstance(d, int) else None for d in shape]


def _image_input(meta: dict) -> dict | None:
    """The registry ``input`` of a model with one image tensor input, else None."""
    ports = meta.get("io_ports")
    if not ports or len(ports["inputs"]) != 1:
        return None
    (inp,) = ports["inputs"]
    shape = _dims(inp["shape"])
    if len(shape) != 4 or inp["type"] not in DTYPES:
        return None
    layout = "NHWC" if shape[-1] == 3 else "NCHW"
    return {"name": inp["name"], "layout": layout, "shape": shape, "dtype": DTYPES[inp["type"]]}


def entry(m: dict, chosen: tuple | None = None) -> dict:
    stem = Path(m["model_path"]).stem
    meta = m["metadata"]
    family = meta.get("tags", [""])[-1]
    folder = "/".join(m["model_path"].split("/")[1:3])
    pre = chosen[3] if chosen else next((recipe for pattern, recipe in RUNNABLE if pattern.search(stem)), None)
    image_input = _image_input(meta)
    if image_input is None:
        pre = None
    task = next((t for pattern, t in MODEL_TASKS if pattern.search(stem)),
                FAMILY_TASKS.get(family, TASKS.get(folder, "other")))
    outputs = (meta.get("io_ports") or {}).get("outputs") or []
    classes = _dims(outputs[0]["shape"])[1] if outputs and len(outputs[0]["shape"]) > 1 else None
    family = next((f for pattern, f in DETECTORS if pattern.search(stem)), None)
    runs = pre or family  # a detector's recipe is set below, from its family
    description = (f"{chosen[2]}. From the ONNX Model Zoo ({m['model']})." if chosen else
                   f"{m['model']} ({', '.join(meta.get('tags', [])[1:])}), opset {m['opset_version']}, from the "
                   "ONNX Model Zoo" + ("" if runs else "; no preprocessing recorded: give one to the stage, or use "
                                                        "onnx_model") + ".")
    out = {"name": stem, **({"aliases": chosen[1]} if chosen else {}), "description": description,
           "license": LICENSES.get(family, "Apache-2.0"), "task": task, "format": "onnx",
           "sha256": meta["model_sha"], "bytes": meta["model_bytes"],
           "sources": [f"hf://onnxmodelzoo/{stem}/{stem}.onnx@main", GITHUB + m["model_path"]]}
    if image_input is not None:
        out["input"] = image_input
    if outputs:
        out["output"] = {"name": outputs[0]["name"], "shape": _dims(outputs[0]["shape"]),
                         **({"activation": "softmax"} if SOFTMAX_OUTPUT.search(stem) else {})}
    out["preprocess"] = pre
    out["labels"] = "imagenet" if task == "image-classification" and classes in (1000, None) and \
        folder == "vision/classification" and family != "mnist" else None
    if family == "yolov3":
        out["input"] = image_input = dict(YOLOV3_INPUT)
    if family == "faster-rcnn":  # one image of any size, without a batch axis
        out["input"] = image_input = dict(RCNN_INPUT)
    if family is not None and image_input is not None:
        size = image_input["shape"][1:3] if image_input["layout"] == "NHWC" else image_input["shape"][2:4]
        size = [416, 416] if family == "yolov3" else [800, 800] if family == "faster-rcnn" else size
        out["preprocess"], out["detection"], out["labels"] = detector(family, tuple(size))
        if family == "tf-ssd":  # the names differ between exports (":0" suffixes)
            names = [o["name"] for o in outputs]
            out["detection"]["outputs"] = {role: next(n for n in names if n.split(":")[0] == base)
                                           for role, base in TF_OUTPUTS.items()}
        if family == "faster-rcnn":  # boxes, labels, scores (Mask R-CNN: then masks), in the graph's order
            out["detection"]["outputs"] = dict(zip(("boxes", "classes", "scores"), (o["name"] for o in outputs)))
        if family == "yolov3":  # boxes, scores, selected indices, in the graph's order
            out["detection"]["outputs"] = dict(zip(("boxes", "scores", "indices"), (o["name"] for o in outputs)))
    out["opset"] = m["opset_version"]
    out["homepage"] = f"https://huggingface.co/onnxmodelzoo/{stem}"
    return out


def build(manifest: list[dict]) -> dict:
    by_stem = {Path(m["model_path"]).stem: m for m in manifest}
    chosen = {c[0]: c for c in CHOSEN}
    models = [entry(by_stem[stem], chosen[stem]) for stem in chosen]  # the long-standing entries first
    models += [entry(m) for stem, m in sorted(by_stem.items(), key=lambda kv: kv[0].lower()) if stem not in chosen]
    return {
        "$schema": "zoo/hub/registry.schema.json",
        "schema_version": 1,
        "description": "sparkzoo's built-in registry: the ONNX Model Zoo, pinned by sha256 (image classifiers and "
                       "feature extractors with their preprocessing; every other model listed with its task).",
        "models": models,
    }


if __name__ == "__main__":
    manifest = json.loads(Path(sys.argv[1]).read_text())
    out = Path(__file__).resolve().parents[1] / "registry.json"
    out.write_text(json.dumps(build(manifest), indent=2) + "\n")
    print(f"wrote {out}")
