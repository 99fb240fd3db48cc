"""A standalone cluster against local mode with the same cores (issue 36, item 1: first measurements).

    python benchmarks/bench_cluster.py --copies 3 --repeat 2        # needs ../shared; ~8 min on 2 cores

Starts, with the README's own commands (``tests/_cluster.py``: master, one-core workers, each its
own ZOO_HOME holding the model), N one-core workers and compares ``zoo featurize`` of the shared
photos (``--copies`` times over) with local[N], interleaved: 2 workers vs local[2], 1 worker vs
local[1]. Prints one JSON line per run and the medians with the ratios cluster/local and 2/1
workers. Fixed costs dominate small inputs (local[1] is as fast as local[2] at 300 photos): use
``--copies 10`` or more for the per-image figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    from _cluster import StandaloneCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="copies of the 100 shared photos (default 3)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    zoo = str(Path(sys.executable).with_name("zoo"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        photos = work / "photos"
        photos.mkdir()
        for k in range(args.copies):
            for p in sorted((SHARED / "data" / "imagenet-sample").glob("*.JPEG")):
                shutil.copy(p, photos / f"{k}-{p.name}")
        n = len(list(photos.iterdir()))
        homes = [work / f"home{i}" for i in range(3)]
        for home in homes:
            subprocess.run([zoo, "add", str(SHARED / "models" / "mobilenetv2-12-int8.onnx"), "--name", "mnv2-bench",
                            "--labels", "imagenet"], env={**os.environ, "ZOO_HOME": str(home)}, check=True,
                           capture_output=True)
        runs: dict[str, list[float]] = {}

        def featurize(master: str, arm: str) -> None:
            env = {**os.environ, "ZOO_HOME": str(homes[2]), "ZOO_PROGRESS": "0", "PYSPARK_PYTHON": sys.executable}
            started = time.perf_counter()
            done = subprocess.run([zoo, "featurize", str(photos), "--model", "mnv2-bench", "--output", str(work / "out"),
                                   "--overwrite", "--master", master, "--json"], env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{arm}: {done.stderr[-2000:]}")
            summary = json.loads(done.stdout)
            runs.setdefault(arm, []).append(summary["seconds"])
            print(json.dumps({"arm": arm, "images": n, "seconds": summary["seconds"],
                              "img_s": round(n / summary["seconds"], 1), "startup_s": summary["startup_seconds"],
                              "wall_s": round(time.perf_counter() - started, 1)}), flush=True)

        for rep in range(args.repeat):
            featurize("local[2]", "local[2]")
            with StandaloneCluster(work / f"two-{rep}", [{"ZOO_HOME": str(homes[0])}, {"ZOO_HOME": str(homes[1])}]) as c:
                featurize(c.url, "2 workers")
            featurize("local[1]", "local[1]")
            with StandaloneCluster(work / f"one-{rep}", [{"ZOO_HOME": str(homes[0])}]) as c:
                featurize(c.url, "1 worker")
    medians = {arm: statistics.median(v) for arm, v in runs.items()}
    print(json.dumps({"cores": os.cpu_count(), "images": n, "median_seconds": medians,
                      "cluster_over_local_2": round(medians["local[2]"] / medians["2 workers"], 2),
                      "cluster_over_local_1": round(medians["local[1]"] / medians["1 worker"], 2),
                      "two_over_one_worker": round(medians["1 worker"] / medians["2 workers"], 2)}))


if __name__ == "__main__":
    main()
