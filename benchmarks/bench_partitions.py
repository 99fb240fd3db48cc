"""How ``read_images`` partitions the files, measured on one warm Spark session (issue 17).

    python benchmarks/bench_partitions.py --models resnet50,mobilenet --images 300 --rounds 5 \\
        --arms default,bytes,packed,f2,f8

Arms (each ``zoo.pipeline(name, cut=1)`` to the noop sink, interleaved round by round so a drift of
the machine's speed touches every arm alike): ``default`` = ``read_images`` as shipped (local files:
executors read them, rows spread evenly over ``zoo.pipelines.default_partitions``); ``fN`` = the
same over N partitions; ``bytes`` = ``content=True`` (the JVM reads the files, Spark's packing
coalesced); ``packed`` = the bytes in Spark's packing as is (``partitions=0``); ``pN`` = the bytes
coalesced to N. Prints img/s per round, sorted, and the partition count. The shared photos, cycled
to ``--images``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import bench_featurize as bf  # noqa: E402  (the helpers: photo copies, registered models, a quiet session)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arms", default="default,bytes,packed")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
    try:
        return _run(args, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _run(args: argparse.Namespace, out: Path) -> int:
    os.environ.setdefault("ZOO_HOME", str(out / "zoo-home"))
    import zoo

    folder = out / "photos"
    folder.mkdir()
    bf.photo_copies(args.images, folder)
    cases = bf.register_models(args.models.split(","), out)
    spark = bf._spark(f"local[{args.cores}]")

    def run(case, arm: str) -> tuple[int, float]:
        count = int(arm[1:]) if arm[:1] in ("f", "p") and arm[1:].isdigit() else None
        if arm == "default" or arm.startswith("f"):
            df = zoo.read_images(spark, str(folder), partitions=count)
        else:  # bytes, packed, pN
            df = zoo.read_images(spark, str(folder), content=True, partitions=0 if arm == "packed" else count)
        model = zoo.pipeline(case.name, cut=1, outputFormat="array").fit(df)
        started = time.perf_counter()
        model.transform(df).select("path", "features").write.format("noop").mode("overwrite").save()
        return df.rdd.getNumPartitions(), args.images / (time.perf_counter() - started)

    arms = args.arms.split(",")
    for case in cases:
        for arm in arms:
            run(case, arm)  # warm-up: workers, sessions
        rates: dict[str, list[float]] = {arm: [] for arm in arms}
        parts: dict[str, int] = {}
        for _ in range(args.rounds):
            for arm in arms:
                parts[arm], rate = run(case, arm)
                rates[arm].append(rate)
        for arm in arms:
            print(f"{case.name:26} {arm:8} {' '.join(f'{r:6.1f}' for r in sorted(rates[arm]))} img/s "
                  f"({parts[arm]} partitions)", flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
