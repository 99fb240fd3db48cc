"""Regenerate registry.json from the ONNX Model Zoo manifest (real upstream sha256 and sizes).

    python scripts/build_registry.py ../shared/reference/onnx-model-zoo-classification-manifest.json

The manifest is the hub manifest of the ONNX Model Zoo; since the zoo left Git LFS its files are
served from the Hugging Face Hub as onnxmodelzoo/<stem>/<stem>.onnx, with the old GitHub path kept
as a second source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.hub.presets import EFFICIENTNET_LITE, IMAGENET  # noqa: E402

GITHUB = "https://github.com/onnx/models/raw/main/"
# (file stem, aliases, description, preprocess)
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
DTYPES = {"tensor(float)": "float32"}
SOFTMAX_OUTPUT = {"efficientnet-lite4-11", "efficientnet-lite4-11-int8"}  # the others output logits


def _dims(shape):
    return [d if isinstance(d, int) else None for d in shape]


def build(manifest: list[dict]) -> dict:
    by_stem = {Path(m["model_path"]).stem: m for m in manifest}
    models = []
    for stem, aliases, description, pre in CHOSEN:
        m = by_stem[stem]
        meta = m["metadata"]
        (inp,) = meta["io_ports"]["inputs"]
        out = meta["io_ports"]["outputs"][0]
        shape = _dims(inp["shape"])
        layout = "NHWC" if shape[-1] == 3 else "NCHW"
        models.append(
            {
                "name": stem,
                "aliases": aliases,
                "description": f"{description}. From the ONNX Model Zoo ({m['model']}).",
                "license": "Apache-2.0",
                "task": "image-classification",
                "format": "onnx",
                "sha256": meta["model_sha"],
                "bytes": meta["model_bytes"],
                "sources": [f"hf://onnxmodelzoo/{stem}/{stem}.onnx@main", GITHUB + m["model_path"]],
                "input": {"name": inp["name"], "layout": layout, "shape": shape, "dtype": DTYPES[inp["type"]]},
                "output": {"name": out["name"], "shape": _dims(out["shape"]),
                           **({"activation": "softmax"} if stem in SOFTMAX_OUTPUT else {})},
                "preprocess": pre,
                "labels": "imagenet",
                "opset": m["opset_version"],
                "homepage": f"https://huggingface.co/onnxmodelzoo/{stem}",
            }
        )
    return {
        "$schema": "zoo/hub/registry.schema.json",
        "schema_version": 1,
        "description": "sparkzoo's built-in registry: ONNX Model Zoo image classifiers, pinned by sha256.",
        "models": models,
    }


if __name__ == "__main__":
    manifest = json.loads(Path(sys.argv[1]).read_text())
    out = Path(__file__).resolve().parents[1] / "registry.json"
    out.write_text(json.dumps(build(manifest), indent=2) + "\n")
    print(f"wrote {out}")
