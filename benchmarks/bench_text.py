"""``text_featurizer`` against the equivalent hand-built SparkML pipeline: same output, ratio of time.

    python benchmarks/bench_text.py                # 200,000 documents
    python benchmarks/bench_text.py --smoke        # 2,000 documents (CI)

Corpus: the paragraphs of Python's own documentation topics (``pydoc_data.topics``, real English
shipped with CPython), cycled to --docs documents. Both methods compute words + word pairs, English
stop words removed, 2^18 hashed term counts weighted by IDF:

  baseline  Pipeline(RegexTokenizer, StopWordsRemover, NGram(2), SQLTransformer concat, HashingTF, IDF)
  sparkzoo  text_featurizer(nGramLengths=[1, 2])

Each is fitted and its transform written to Spark's ``noop`` sink, on ``local[2]`` over a cached
DataFrame, best of --repeats; the outputs are compared row by row (they must be equal).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

PATTERN = r"(?U)\W+"


def corpus(n: int) -> list[tuple[int, str]]:
    from pydoc_data.topics import topics

    paragraphs = [p.strip() for text in topics.values() for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 5]
    return [(i, paragraphs[i % len(paragraphs)]) for i in range(n)]


def baseline_pipeline():
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import IDF, NGram, HashingTF, RegexTokenizer, SQLTransformer, StopWordsRemover

    return Pipeline(stages=[
        RegexTokenizer(inputCol="text", outputCol="tokens", pattern=PATTERN, gaps=True, toLowercase=True),
        StopWordsRemover(inputCol="tokens", outputCol="words"),
        NGram(n=2, inputCol="words", outputCol="pairs"),
        SQLTransformer(statement="SELECT *, concat(words, pairs) AS terms FROM __THIS__"),
        HashingTF(inputCol="terms", outputCol="tf", numFeatures=1 << 18),
        IDF(inputCol="tf", outputCol="features"),
    ])


def sparkzoo_stage():
    import zoo

    return zoo.stage("text_featurizer", inputCol="text", outputCol="features", nGramLengths=[1, 2])


def timed(make, df, repeats: int) -> tuple[float, object]:
    best, model = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        model = make().fit(df)
        model.transform(df).write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - started)
    return best, model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="2,000 documents, one repeat, no warm-up")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.smoke:
        args.docs, args.repeats = 2_000, 1

    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("bench-text").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "4").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame(corpus(args.docs), "id long, text string").repartition(4).cache()
    df.count()
    if not args.smoke:  # the smoke run checks that the outputs agree; its timings mean nothing anyway
        timed(sparkzoo_stage, df, 1)  # warm-up of both code paths, not timed
        timed(baseline_pipeline, df, 1)
    base_s, base_model = timed(baseline_pipeline, df, args.repeats)
    zoo_s, zoo_model = timed(sparkzoo_stage, df, args.repeats)

    sample = df.orderBy("id").limit(2_000)
    expected = {r["id"]: r["features"] for r in base_model.transform(sample).select("id", "features").collect()}
    got = {r["id"]: r["features"] for r in zoo_model.transform(sample).select("id", "features").collect()}
    equal = expected == got
    result = {"docs": args.docs, "baseline_s": base_s, "sparkzoo_s": zoo_s, "ratio": base_s / zoo_s,
              "outputs_equal": equal, "rows_compared": len(expected)}
    print(f"{'method':30} {'seconds':>9} {'docs/s':>10}")
    print(f"{'hand-built SparkML pipeline':30} {base_s:9.2f} {args.docs / base_s:10.0f}")
    print(f"{'sparkzoo text_featurizer':30} {zoo_s:9.2f} {args.docs / zoo_s:10.0f}")
    print(f"ratio (baseline time / sparkzoo time): {base_s / zoo_s:.2f}; outputs equal on {len(expected)} rows: {equal}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    spark.stop()
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
