"""Incremental featurization against a full run, on real photos with the real MobileNet v2 int8.

    python benchmarks/bench_incremental.py                 # 2,000 images, 1% added and 1% modified
    python benchmarks/bench_incremental.py --count 200     # quicker

The shared photos (../shared/data/imagenet-sample) are copied, cycled, into a temporary folder of
``--count`` files; ``zoo.featurize_incremental`` featurizes them all (the full run, timed), then
``--change`` of the files are added (copies of other photos) and as many are modified (overwritten
with another photo), and the incremental run is timed. A full re-run into a second output checks
that the incremental output equals it row for row. One local[cores] session, one warm-up first.
Target (issue 20): incremental time <= 10% of the full run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--change", type=float, default=0.01, help="fraction of files added, and as many modified")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--model", choices=["mobilenet", "resnet50"], default="mobilenet",
                    help="the shared MobileNet v2 int8 (fast: the fixed costs show), or a seeded ResNet-50 (compute-bound)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    photos = sorted((SHARED / "data" / "imagenet-sample").glob("*.JPEG"))
    model_file = SHARED / "models" / "mobilenetv2-12-int8.onnx"
    if not photos or not model_file.exists():
        print(f"the shared photos and model are not beside the checkout ({SHARED})", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    os.environ["ZOO_HOME"] = str(work / "zoo-home")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("ZOO_PROGRESS", "0")
    from pyspark.sql import SparkSession

    import zoo
    from zoo import log

    log.configure("INFO" if os.environ.get("ZOO_BENCH_VERBOSE") else None)  # where the incremental run's time goes
    if args.model == "resnet50":  # the real architecture with seeded weights (benchmarks/_resnet50.py)
        sys.path.insert(0, str(Path(__file__).parent))
        from _resnet50 import build

        model_file = work / "resnet50-seeded.onnx"
        model_file.write_bytes(build())
    zoo.add(str(model_file), name="mnv2-bench", preprocess="imagenet", labels="imagenet")
    folder = work / "photos"
    folder.mkdir()
    for i in range(args.count):
        shutil.copy(photos[i % len(photos)], folder / f"{i:06d}_{photos[i % len(photos)].name}")
    spark = (SparkSession.builder.master(f"local[{args.cores}]").appName("bench-incremental")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    pipe = zoo.pipeline("mnv2-bench", cut=1, outputFormat="array")
    try:
        warm = zoo.read_images(spark, str(folder), glob="00000*")
        zoo.featurize_incremental(spark, warm, str(work / "warm.parquet"), pipe)  # JVM, workers, model loaded
        full = zoo.featurize_incremental(spark, zoo.read_images(spark, str(folder)), str(work / "out.parquet"), pipe)
        changes = max(1, int(args.count * args.change))
        for k in range(changes):  # added: copies of photos under new names; modified: other bytes in place
            shutil.copy(photos[(k + 7) % len(photos)], folder / f"added_{k:04d}.JPEG")
            target = sorted(folder.glob("0*"))[k * (args.count // changes)]
            shutil.copy(photos[(k + 3) % len(photos)], target)
            os.utime(target, (time.time() + 5, time.time() + 5))
        inc = zoo.featurize_incremental(spark, zoo.read_images(spark, str(folder)), str(work / "out.parquet"), pipe)
        again = zoo.featurize_incremental(spark, zoo.read_images(spark, str(folder)), str(work / "full.parquet"), pipe)

        def rows(path: Path) -> dict:
            return {r["path"]: r["features"] for r in spark.read.parquet(str(path)).select("path", "features").collect()}

        same = rows(work / "out.parquet") == rows(work / "full.parquet")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratio = inc.seconds / full.seconds
    figures = {"count": args.count, "added": changes, "modified": changes, "full_seconds": full.seconds,
               "incremental_seconds": inc.seconds, "full_rerun_seconds": again.seconds, "ratio": round(ratio, 4),
               "incremental_featurized": inc.featurized, "kept": inc.kept, "equal_to_full_run": same,
               "cores": args.cores, "model": args.model}
    print(f"{args.model}: {args.count} images, {changes} added + {changes} modified: full {full.seconds:.1f} s, incremental "
          f"{inc.seconds:.1f} s ({inc.featurized} featurized, {inc.kept} kept) -> ratio {ratio:.3f} (target <= 0.10); "
          f"equal to a full re-run: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if same and inc.featurized == 2 * changes else 1


if __name__ == "__main__":
    sys.exit(main())
