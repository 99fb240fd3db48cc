"""vector_assembler vs pyspark.ml.feature.VectorAssembler on wide deep-feature arrays.

    python benchmarks/bench_vector_assembler.py [--rows 20000] [--width 2048] [--repeat 3]

Input: a cached DataFrame with one array<float> column of --width values (a ResNet-50 pool
feature is 2048 wide) plus three scalars (double, long, boolean). Baseline: Spark's own
VectorAssembler, which cannot read arrays, so the array is first converted with
``array_to_vector`` (the documented idiom). Both results are forced with the ``noop`` writer;
medians of --repeat runs are compared in the same Spark session. Target: ratio >= 2.
The third row is sparkzoo without its JVM functions (``ZOO_JVM_FUNCTIONS=0``: Spark's
``array_to_vector`` instead of the jar's ``dense_vector``), the path taken where the jar cannot load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "out" / "vector_assembler.json")
    args = parser.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import zoo

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "4g").config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = (spark.range(args.rows)
          .withColumn("arr", F.transform(F.sequence(F.lit(1), F.lit(args.width)), lambda i: (F.rand(7) * i).cast("float")))
          .withColumn("x", F.rand(3)).withColumn("n", F.col("id") % 7).withColumn("flag", F.col("id") % 2 == 0)
          .cache())
    df.count()

    ours = zoo.stage("vector_assembler", inputCols=["arr", "x", "n", "flag"], outputCol="features")
    spark_va = VectorAssembler(inputCols=["arr_vec", "x", "n", "flag"], outputCol="features")

    def run_ours():
        ours.transform(df).select("features").write.format("noop").mode("overwrite").save()

    def run_without_jar():
        os.environ["ZOO_JVM_FUNCTIONS"] = "0"
        try:
            run_ours()
        finally:
            del os.environ["ZOO_JVM_FUNCTIONS"]

    def run_spark():
        spark_va.transform(df.withColumn("arr_vec", array_to_vector("arr"))).select("features") \
            .write.format("noop").mode("overwrite").save()

    a = ours.transform(df.limit(3)).select("features").collect()
    b = spark_va.transform(df.limit(3).withColumn("arr_vec", array_to_vector("arr"))).select("features").collect()
    assert [r.features.toArray().tolist() for r in a] == [r.features.toArray().tolist() for r in b], "outputs differ"

    from zoo.runtime import jvm_functions

    jar_used = jvm_functions.available(spark)
    timings = {"sparkzoo": [], "spark": [], "sparkzoo_without_jar": []}
    run_ours(), run_spark(), run_without_jar()  # warm-up: code generation, JIT
    for _ in range(args.repeat):
        for label, fn in (("spark", run_spark), ("sparkzoo", run_ours), ("sparkzoo_without_jar", run_without_jar)):
            t = time.perf_counter()
            fn()
            timings[label].append(time.perf_counter() - t)
    spark.stop()
    med = {k: statistics.median(v) for k, v in timings.items()}
    result = {"rows": args.rows, "width": args.width, "seconds": med, "ratio": med["spark"] / med["sparkzoo"],
              "ratio_without_jar": med["spark"] / med["sparkzoo_without_jar"], "jvm_functions": jar_used}
    print(f"vector assembly of {args.rows} rows x ({args.width}-wide array + 3 scalars), median of {args.repeat}")
    print(f"  Spark VectorAssembler (+array_to_vector) {med['spark']:8.2f} s  {args.rows / med['spark']:10.0f} rows/s")
    print(f"  sparkzoo vector_assembler                {med['sparkzoo']:8.2f} s  {args.rows / med['sparkzoo']:10.0f} rows/s"
          f"  (JVM functions {'used' if jar_used else 'NOT usable'})")
    print(f"  sparkzoo without the jar                 {med['sparkzoo_without_jar']:8.2f} s  "
          f"{args.rows / med['sparkzoo_without_jar']:10.0f} rows/s  ratio {result['ratio_without_jar']:.2f}")
    print(f"  ratio (target >= 2.0)                    {result['ratio']:8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
