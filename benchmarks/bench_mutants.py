"""The conformance kit's mutation score: how many automatically derived defects it catches (issue 35).

    python benchmarks/bench_mutants.py [--bases text_normalize,vector_assembler,rename] [--operators a,b]
                                       [--fuzz-examples 6] [--out mutants.json]

Each base is a correct stage (a registered name: the example plugin's and the built-ins'); every
operator of :mod:`zoo.testing.mutants` that applies derives one defective variant of it, and the
whole kit runs on each, in one local[2] session in UTC (as the pytest plugin's). Prints one line per
mutant (which checks killed it), the kill rate, and the survivors with the check that was expected
to catch them. The target is a kill rate of at least 90%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_BASES = "text_normalize,vector_assembler,rename,text_featurizer"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", default=DEFAULT_BASES, help="comma-separated registered stage names")
    ap.add_argument("--operators", default="", help="only these operators (default: all)")
    ap.add_argument("--fuzz-examples", type=int, default=6, help="as the test suite runs the kit")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from pyspark.sql import SparkSession

    from zoo.testing import prefer_jvm_options, quiet_spark_logs
    from zoo.testing.mutants import score

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    prefer_jvm_options()
    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "4")
             .getOrCreate())
    quiet_spark_logs(spark)

    def show(result) -> None:
        verdict = ", ".join(result.killed_by) if result.killed else "SURVIVED"
        print(f"{result.mutant.base:18} {result.mutant.operator:36} {verdict:40} {result.seconds:5.1f} s", flush=True)

    started = time.perf_counter()
    report = score(spark, args.bases.split(","), operators=[o for o in args.operators.split(",") if o] or None,
                   fuzz_examples=args.fuzz_examples, on_result=show)
    spark.stop()
    data = report.to_dict() | {"seconds": round(time.perf_counter() - started, 1), "bases": args.bases.split(",")}
    print(f"\n{report.killed} of {report.total} mutants killed ({data['kill_rate']:.0%}) in {data['seconds']:.0f} s")
    for m in report.survivors:
        print(f"  survived: {m.base} {m.operator} (expected: {m.expected})")
    for base, op, why in report.not_applicable:
        print(f"  not applicable: {base} {op}: {why}")
    if args.out:
        args.out.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
