"""Where a featurization task's time goes, per image, on one core (what one Spark task does).

    python benchmarks/profile_task.py --images 200            # after bench_featurize.py made the inputs

For each image kind (``large``: 800x600 JPEGs, ``photos``: the shared photos as they are) and model,
the executor's own steps are timed one by one in this process, with ONNX Runtime on one thread and
sparkzoo's default batch, exactly as ``featurize_images`` runs them:

  read      the file's bytes (what the JVM's binaryFile reader does; here from the page cache)
  decode    JPEG -> BGR pixels (OpenCV)
  prepare   colour order, resize, crop, normalise into the batch buffer
  infer     ONNX Runtime on the batch
  output    the features as an Arrow list column

Their sum is the work of one image on one core. Compared with the img/s of the Spark run of the same
files on N cores (``--spark-img-s``, from bench_featurize.py), the rest, N / (img/s) - sum, is what
Spark adds: Arrow transfer between the JVM and Python, task scheduling, and idle cores at the end of
the stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def profile(case_name: str, files: list[Path]) -> dict[str, float]:
    import onnxruntime as ort

    import zoo
    from zoo.runtime import imaging, sessions
    from zoo.runtime.arrow import arrow_values

    info = zoo.info(case_name)
    pre = imaging.Preprocessor(info["preprocess"], info["input"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(zoo.cut(case_name, 1)), opts, providers=["CPUExecutionProvider"])
    step = sessions.rows_per_call(0, "cpu")
    buf = np.empty((step, *pre.row_shape), pre.dtype)
    name = info["input"]["name"]
    sess.run(None, {name: buf})  # warm-up
    spent = dict.fromkeys(("read", "decode", "prepare", "infer", "output"), 0.0)
    clock = time.perf_counter
    for start in range(0, len(files), step):
        chunk = files[start:start + step]
        for j, f in enumerate(chunk):
            t0 = clock()
            data = f.read_bytes()
            t1 = clock()
            pixels = imaging.decode(data)
            t2 = clock()
            pre(pixels, buf[j])
            t3 = clock()
            spent["read"] += t1 - t0
            spent["decode"] += t2 - t1
            spent["prepare"] += t3 - t2
        t0 = clock()
        out = sess.run(None, {name: buf[:len(chunk)]})[0].reshape(len(chunk), -1).astype(np.float32)
        t1 = clock()
        arrow_values(out)
        spent["output"] += clock() - t1
        spent["infer"] += t1 - t0
    return {k: 1000 * v / len(files) for k, v in spent.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out", help="bench_featurize.py's --out")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--models", default="resnet50,mobilenet")
    ap.add_argument("--report", type=Path, help="bench_featurize.py's featurize.json: adds what Spark adds")
    args = ap.parse_args()
    os.environ.setdefault("ZOO_HOME", str(args.out / "zoo-home"))
    import bench_featurize as bf

    cases = bf.register_models(args.models.split(","), args.out)
    spark_rates = {}
    cores = 2
    if args.report:
        report = json.loads(args.report.read_text())
        cores = report["cores"]
        spark_rates = {(c.get("kind", "large"), c["model"]): c["methods"]["sparkzoo"]["images_per_second"]
                       for c in report["cases"] if "sparkzoo" in c["methods"]}
    rows = []
    for kind, folder in (("large", args.out / f"images-{args.images}"), ("photos", args.out / f"photos-{args.images}")):
        files = sorted(folder.glob("*"))
        if not files:
            continue
        for case in cases:
            ms = profile(case.name, files)
            total = sum(ms.values())
            rate = spark_rates.get((kind, case.name))
            row = {"kind": kind, "model": case.name, "images": len(files), **{k: round(v, 2) for k, v in ms.items()},
                   "sum_ms": round(total, 2)}
            if rate:
                row["spark_ms_per_image_per_core"] = round(1000 * cores / rate, 2)
                row["spark_adds_ms"] = round(1000 * cores / rate - total, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "profile.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
