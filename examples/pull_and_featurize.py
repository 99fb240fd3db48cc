"""Pull a pretrained network from the zoo and turn a folder of images into feature vectors.

    python examples/pull_and_featurize.py IMAGES OUT.parquet --model resnet50 --cut 1
    python examples/pull_and_featurize.py ../shared/data/imagenet-sample features.parquet \
        --model-file ../shared/models/mobilenetv2-12-int8.onnx          # offline: a local ONNX file

Locally it runs on ``local[*]``; under ``spark-submit`` it runs wherever the master says (see
examples/cluster/). Each step is a function so the notebook beside this file can show them one
by one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def get_model(name: str | None, model_file: Path | None) -> str:
    """The zoo name to featurize with: pulled by name (checksummed, cached), or a local file added."""
    import zoo

    if model_file is not None:
        entry = zoo.add(model_file, name=model_file.stem, preprocess="imagenet", license="see the file's source")
        return entry.name
    zoo.pull(name)  # downloads once per machine, verified by sha256; later calls are cache hits
    return name


def spark_session(master: str | None):
    from pyspark.sql import SparkSession

    # a local master's workers run on this machine: give them this interpreter. Under spark-submit
    # (PYSPARK_GATEWAY_PORT set) or on a cluster, the executors' Python is the submitter's choice.
    if (master or "local").startswith("local") and "PYSPARK_GATEWAY_PORT" not in os.environ:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("zoo-pull-and-featurize").config("spark.ui.showConsoleProgress", "false")
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()


def featurize(spark, images: str, model: str, cut: int, out: str, glob: str | None = None):
    """Images -> features parquet with one row per image (path, features); returns the DataFrame written."""
    import zoo

    df = zoo.read_images(spark, images, glob=glob)
    fitted = zoo.pipeline(model, cut=cut, handleInvalid="keep").fit(df)
    features = fitted.transform(df).select("path", "features", "error")
    features.write.mode("overwrite").parquet(out)
    return spark.read.parquet(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", help="folder (or glob/URL Spark can read) of image files")
    ap.add_argument("out", help="parquet output path")
    ap.add_argument("--model", default="resnet50", help="zoo model name (zoo models lists them)")
    ap.add_argument("--model-file", type=Path, default=None, help="a local ONNX file instead of --model")
    ap.add_argument("--cut", type=int, default=1, help="layers cut from the top (1: the penultimate layer)")
    ap.add_argument("--glob", default=None, help="file name filter, e.g. '*.jpg'")
    ap.add_argument("--master", default=None, help="Spark master (default: spark-submit's; plain python: local[*])")
    args = ap.parse_args(argv)

    import zoo

    model = get_model(args.model, args.model_file)
    launched = time.perf_counter()
    spark = spark_session(args.master)
    started = time.perf_counter()
    # on a cluster: executor-side zoo errors come back as zoo.errors classes, task failures as one line each
    with zoo.cluster.watch(spark) as watched:
        written = featurize(spark, args.images, model, args.cut, args.out, args.glob)
    seconds = time.perf_counter() - started
    rows = written.count()
    failed = written.where("error IS NOT NULL").count()
    width = len(written.where("error IS NULL").first()["features"]) if rows > failed else 0
    print(f"{rows} images -> {args.out}: {width} features each, {failed} undecodable, in {seconds:.1f} s: "
          f"{rows / seconds:.1f} img/s (after {started - launched:.1f} s starting Spark)")
    for node in watched.nodes:  # where each node got the model (node cache, shipped, downloaded from ...)
        print(f"  {node}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
