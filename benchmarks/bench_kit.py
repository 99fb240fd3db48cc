"""What the conformance kit costs, per stage and check, and what its JVM's JIT costs.

    python benchmarks/bench_kit.py drop,onnx_model                 # seconds and Spark jobs per check
    python benchmarks/bench_kit.py drop,onnx_model --partitions 4  # the session's partitions (zoo_spark: 2)
    python benchmarks/bench_kit.py select,drop --cli --jvm-options "" --jvm-options=-XX:TieredStopAtLevel=1

The first form runs ``zoo.testing.run_checks`` in this process on a local[2] session like the
pytest plugin's (but with the JVM's default JIT unless ``SPARK_SUBMIT_OPTS`` says otherwise) and
counts the Spark jobs each check starts. ``--cli`` runs ``zoo check STAGES
--json`` once per ``--jvm-options`` value (given to the driver through ``SPARK_SUBMIT_OPTS``;
"" = the JVM's defaults) and reports wall time and the CPU of its whole process tree (the JVM
included), sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path


def in_process(stages: list[str], partitions: int, fuzz: int) -> None:
    from pyspark.sql import SparkSession

    from zoo.testing import quiet_spark_logs, run_checks

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", str(partitions)).config("spark.default.parallelism", str(partitions))
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").config("spark.ui.retainedJobs", "100000")
             .getOrCreate())
    quiet_spark_logs(spark)
    tracker = spark.sparkContext.statusTracker()
    for stage in stages:
        jobs, seconds = collections.Counter(), collections.Counter()
        seen = [len(tracker.getJobIdsForGroup())]

        def count(result) -> None:
            now = len(tracker.getJobIdsForGroup())
            jobs[result.check] += now - seen[0]
            seconds[result.check] += result.seconds
            seen[0] = now

        started = time.perf_counter()
        run_checks(stage, spark, fuzz_examples=fuzz, on_result=count)
        print(f"{stage}: {time.perf_counter() - started:.1f} s, {sum(jobs.values())} Spark jobs", flush=True)
        for check in seconds:
            print(f"  {check:13} {jobs[check]:4d} jobs {seconds[check]:6.1f} s")
    spark.stop()


def tree_cpu(command: list[str], env: dict[str, str]) -> tuple[float, float, dict[str, float]]:
    """(wall seconds, CPU seconds of the process tree, CPU by process name); raises if the command
    fails. A process that lives under 0.1 s can be missed; the JVM and the Python workers are not."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root, last = psutil.Process(proc.pid), {}
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            family = []
        for p in family:
            try:
                t = p.cpu_times()
                last[p.pid] = (p.name(), t.user + t.system)
            except psutil.Error:
                pass
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}")
    by_name: dict[str, float] = collections.Counter()
    for name, cpu in last.values():
        by_name[name] += cpu
    return time.perf_counter() - started, sum(by_name.values()), dict(by_name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stages", help="comma-separated registered stage names")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--fuzz-examples", type=int, default=6, help="as the test suite runs it")
    ap.add_argument("--cli", action="store_true", help="time `zoo check` in a subprocess instead")
    ap.add_argument("--jvm-options", action="append", help="--cli: SPARK_SUBMIT_OPTS values to compare")
    args = ap.parse_args()
    stages = args.stages.split(",")
    if not args.cli:
        in_process(stages, args.partitions, args.fuzz_examples)
        return 0
    zoo = Path(sys.executable).with_name("zoo")
    for options in args.jvm_options or [""]:
        env = {**os.environ, "SPARK_SUBMIT_OPTS": options}
        wall, cpu, by_name = tree_cpu([str(zoo), "check", *stages, "--fuzz-examples", str(args.fuzz_examples), "--json"], env)
        print(f"SPARK_SUBMIT_OPTS={options!r}: wall {wall:.1f} s, CPU {cpu:.1f} s (java {by_name.get('java', 0):.1f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
