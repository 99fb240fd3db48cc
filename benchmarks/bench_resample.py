"""Resampling: sparkzoo's preprocessing against the published one (torchvision on Pillow) on the
shared photos and MobileNet v2 int8, and what antialiasing costs per image.

Two arms of ``zoo.runtime.imaging.Preprocessor`` on the same decoded pixels: ``antialiased`` (the
default since 0.3: Pillow's resampler) and ``opencv`` (``cv2.resize`` INTER_LINEAR, what 0.2 did).
For each: top-1 against the photos' labels, mean |pixel difference| to the torchvision-style
reference (normalised units), cosine of the logits to the reference's, and milliseconds of
preprocessing per image on one thread.

    python benchmarks/bench_resample.py [--shared ../shared] [--out resample.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def torchvision_reference(path: Path) -> np.ndarray:
    """``Resize(256)`` + ``CenterCrop(224)`` + ``Normalize`` as torchvision does them on Pillow."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    im = im.resize((256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256), Image.BILINEAR)
    left, top = int(round((im.size[0] - 224) / 2.0)), int(round((im.size[1] - 224) / 2.0))
    return ((np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import cv2
    import onnxruntime as ort

    from zoo.hub.presets import IMAGENET
    from zoo.runtime import imaging

    cv2.setNumThreads(1)
    photos = args.shared / "data" / "imagenet-sample"
    with open(photos / "labels.csv") as fh:
        labels = {row["file"]: int(row["class_index"]) for row in csv.DictReader(fh)}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(args.shared / "models" / "mobilenetv2-12-int8.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    logits = lambda x: sess.run(None, {"input": x[None]})[0][0]  # noqa: E731
    images = {name: imaging.decode((photos / name).read_bytes()) for name in labels}
    references = {name: torchvision_reference(photos / name) for name in labels}
    reference_logits = {name: logits(x) for name, x in references.items()}

    results = {"photos": len(labels),
               "reference_top1": float(np.mean([np.argmax(reference_logits[n]) == lab for n, lab in labels.items()]))}
    for arm in ("antialiased", "opencv"):
        pre = imaging.Preprocessor(IMAGENET, {"shape": [1, 3, 224, 224]})
        if arm == "opencv":
            pre.antialias_filter = None
        out = np.empty(pre.row_shape, np.float32)
        started = time.perf_counter()
        for _ in range(3):
            for img in images.values():
                pre(img, out)
        ms = (time.perf_counter() - started) / (3 * len(images)) * 1000
        hits, pixel, cosine = [], [], []
        for name, label in labels.items():
            pre(images[name], out)
            y, r = logits(out), reference_logits[name]
            hits.append(int(np.argmax(y)) == label)
            pixel.append(float(np.abs(out - references[name]).mean()))
            cosine.append(float(y @ r / np.linalg.norm(y) / np.linalg.norm(r)))
        results[arm] = {"top1": float(np.mean(hits)), "mean_abs_pixel_diff": float(np.mean(pixel)),
                        "mean_logit_cosine": float(np.mean(cosine)), "min_logit_cosine": float(np.min(cosine)),
                        "preprocess_ms_per_image": round(ms, 3)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
