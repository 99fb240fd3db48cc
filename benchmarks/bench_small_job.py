"""A small job's fixed cost: the README main job's "featurize" figure against PySpark's own floor.

    python benchmarks/bench_small_job.py --repeat 5            # needs ../shared (MobileNet v2, 100 photos)

Each repeat runs, interleaved, (1) ``zoo featurize`` of the 100 shared photos on local[2] in a
fresh process (its ``seconds``: after Spark's start, listing to written output) and (2) the floor:
a fresh process whose first Python job is a trivial ``mapInArrow`` writing 4 rows to parquet (what
any PySpark application pays for its first Python job). Reports the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

FLOOR = textwrap.dedent("""
    import sys, time
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.master("local[2]").config("spark.ui.showConsoleProgress", "false").getOrCreate()
    def body(batches):
        yield from batches
    started = time.perf_counter()
    spark.range(4, numPartitions=4).mapInArrow(body, "id long").write.mode("overwrite").parquet(sys.argv[1])
    print(time.perf_counter() - started)
    spark.stop()
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    zoo = Path(sys.executable).with_name("zoo")
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "ZOO_HOME": f"{work}/home", "ZOO_PROGRESS": "0", "PYSPARK_PYTHON": sys.executable}
        subprocess.run([str(zoo), "add", str(SHARED / "models" / "mobilenetv2-12-int8.onnx"), "--name", "mnv2-bench",
                        "--labels", "imagenet"], env=env, check=True, capture_output=True)
        figures: dict[str, list[float]] = {"featurize": [], "floor": [], "command": []}
        for _ in range(args.repeat):
            started = time.perf_counter()
            done = subprocess.run([str(zoo), "featurize", str(SHARED / "data" / "imagenet-sample"), "--glob", "*.JPEG",
                                   "--model", "mnv2-bench", "--output", f"{work}/f.parquet", "--overwrite",
                                   "--master", "local[2]", "--json"], env=env, check=True, capture_output=True, text=True)
            figures["command"].append(time.perf_counter() - started)
            figures["featurize"].append(json.loads(done.stdout)["seconds"])
            floor = subprocess.run([sys.executable, "-c", FLOOR, f"{work}/floor.parquet"], env=env, check=True,
                                   capture_output=True, text=True)
            figures["floor"].append(float(floor.stdout.strip().splitlines()[-1]))
    medians = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    report = {"cores": os.cpu_count(), "repeat": args.repeat, "medians_s": medians,
              "featurize_over_floor": round(medians["featurize"] / medians["floor"], 2),
              "runs_s": {k: [round(x, 2) for x in v] for k, v in figures.items()}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
