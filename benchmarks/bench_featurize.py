"""Featurization speed against the hardware ceiling and the peers, on the same files and cores.

    python benchmarks/bench_featurize.py                  # 1,000 JPEGs, ResNet-50 v1 and MobileNet v2 int8
    python benchmarks/bench_featurize.py --smoke          # a few dozen images, MobileNet only (CI)
    python benchmarks/bench_featurize.py --kinds photos --images 300 --models resnet50 --runs 3

For each model, all in one run on this machine, features of ``cut=1`` from the same JPEG files:

1. ceiling   ONNX Runtime on pre-decoded, pre-normalised tensors, one process, all cores;
2. raw loop  one Python process reading the files, decoding/resizing with OpenCV, batching into
             ONNX Runtime with all cores (the best a user hand-writes without Spark);
   bound     one bare process per core, each doing a Spark task's work (read, decode, prepare, ONNX
             Runtime on one thread at sparkzoo's batch) on its share of the files: sparkzoo's design
             without Spark, so sparkzoo / bound is what Spark costs, and bound / ceiling what decoding
             and preparing on the same cores cost;
3. peer      Spark's idiom: binaryFile + a pandas UDF that decodes + ``predict_batch_udf``;
4. naive     a per-row Python UDF that loads the model lazily (what tutorials do);
5. sparkzoo  ``zoo.pipeline(name, cut=1)`` on ``zoo.read_images(spark, folder)``, written to parquet,
             all defaults (local files: the executors read them, rows spread evenly);
   bytes     the same on ``read_images(..., content=True)``: the JVM reads the files and ships their bytes;
   wide      the same in a session with ``spark.task.cpus`` = cores: one task at a time, ONNX Runtime on
             all cores, the next batch decoded on a second thread meanwhile;
   fast      the same with ``fastDecode=True`` (JPEGs decoded at reduced scale: faster, features
             not identical, so the table shows their smallest cosine similarity to the raw loop).

Every Spark method runs in a fresh local[cores] session (start-up not timed) and writes parquet.
Ratios are to the ceiling and to the peer; absolute img/s are printed too. A VM's speed drifts
over the minutes a run takes, so the ceiling is timed again after each Spark method, and
``adjacent`` is the ratio to the ceiling's median over the runs just before and after it. The sparkzoo run also
reports model loads and peak RSS per Python worker (VmHWM). With --scaling, sparkzoo runs on a
``local-cluster`` with 1 and with 2 single-core executors and a PNG plot is written (matplotlib).

Images: each of the 100 shared ImageNet photos is cropped at random (70-100% of each side,
seeded) and resized to 800x600 or 600x800 (alternating), JPEG quality 90, until --images files
exist. ResNet-50: the pretrained ``resnet50`` from the zoo when it can be pulled, else the same
architecture with seeded weights (``_resnet50.py``; the output says which).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd  # module level: pandas_udf resolves its type hints here

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHOTOS = "data/imagenet-sample"  # relative to the shared folder (--shared)
MOBILENET = "models/mobilenetv2-12-int8.onnx"
sys.path.insert(0, str(Path(__file__).parent))


@dataclass
class Case:
    name: str  # zoo name
    label: str
    note: str


# -- inputs -----------------------------------------------------------------------------------------------
def make_images(n: int, folder: Path, seed: int = 0, photos: Path = SHARED / PHOTOS) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    source = photos
    photos = sorted(source.glob("*.JPEG"))
    if not photos:
        raise SystemExit(f"{source} has no photos: the shared material must sit beside the checkout")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        path = folder / f"img{k:05d}.jpg"
        out.append(path)
        fy, fx, oy, ox = rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0), rng.uniform(), rng.uniform()
        if path.exists():
            continue
        img = cv2.imread(str(photos[k % len(photos)]))
        h, w = img.shape[:2]
        ch, cw = int(h * fy), int(w * fx)
        y, x = int((h - ch) * oy), int((w - cw) * ox)
        size = (800, 600) if k % 2 == 0 else (600, 800)
        img = cv2.resize(img[y:y + ch, x:x + cw], size, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def photo_copies(n: int, folder: Path, photos: Path = SHARED / PHOTOS) -> list[Path]:
    """The shared photos as they are (ordinary ImageNet photographs, about 400x500 px and 110 KB),
    copied and cycled until ``n`` files exist: the everyday kind of input."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    source = sorted(photos.glob("*.JPEG"))
    if not source:
        raise SystemExit(f"{photos} has no photos: the shared material must sit beside the checkout")
    out = []
    for k in range(n):
        path = folder / f"p{k:05d}-{source[k % len(source)].name}"
        if not path.exists():
            shutil.copyfile(source[k % len(source)], path)
        out.append(path)
    return out


KINDS = {"large": "800x600 / 600x800 JPEG q90 made from the shared photos",
         "photos": "the shared ImageNet photos as they are (about 400x500, ~110 KB), cycled"}


def register_models(which: list[str], out: Path, shared: Path = SHARED) -> list[Case]:
    import zoo

    cases = []
    if "resnet50" in which:
        try:
            zoo.pull("resnet50")
            cases.append(Case("resnet50", "ResNet-50 v1 (pretrained)", "resnet50-v1-12 from the zoo"))
        except zoo.errors.ZooError as exc:
            import _resnet50

            path = out / "resnet50-v1-seeded.onnx"
            if not path.exists():
                path.write_bytes(_resnet50.build())
            zoo.add(path, name="resnet50-v1-seeded", preprocess="imagenet", license="n/a")
            cases.append(Case("resnet50-v1-seeded", "ResNet-50 v1 (seeded weights)",
                              f"pretrained file not downloadable here ({type(exc).__name__}); same architecture "
                              "and FLOPs with seeded weights"))
    if "mobilenet" in which:
        zoo.add(shared / MOBILENET, name="mobilenetv2-int8-shared", preprocess="imagenet", license="Apache-2.0")
        cases.append(Case("mobilenetv2-int8-shared", "MobileNet v2 int8 (shared, pretrained)", str(shared / MOBILENET)))
    return cases


# -- single-process baselines ------------------------------------------------------------------------------
def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _preprocessor(case: Case):
    import zoo
    from zoo.runtime.imaging import Preprocessor

    info = zoo.info(case.name)
    return Preprocessor(info["preprocess"], info["input"]), info["input"]["name"]


def run_ceiling(case: Case, files: list[Path], cores: int, batch: int) -> tuple[float, np.ndarray]:
    import cv2
    import zoo

    pre, input_name = _preprocessor(case)
    tensors = np.empty((len(files), *pre.row_shape), np.float32)
    for i, f in enumerate(files):
        pre(cv2.imread(str(f)), tensors[i])
    sess = _session(zoo.cut(case.name, 1), cores)
    sess.run(None, {input_name: tensors[:batch]})  # warm-up, not timed
    started = time.perf_counter()
    outs = [sess.run(None, {input_name: tensors[i:i + batch]})[0] for i in range(0, len(files), batch)]
    return time.perf_counter() - started, np.concatenate(outs).reshape(len(files), -1)


def _featurize_files(sess, pre, input_name: str, files: list[Path], batch: int) -> np.ndarray:
    """A featurization task's work without Spark: read, decode and prepare ``files`` ``batch`` at a time
    into one reused buffer, and run each batch (the raw loop and the bound time this)."""
    from zoo.runtime.imaging import decode

    buf = np.empty((batch, *pre.row_shape), pre.dtype)
    outs = []
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        for j, f in enumerate(chunk):
            pre(decode(f.read_bytes()), buf[j])
        outs.append(sess.run(None, {input_name: buf[:len(chunk)]})[0].reshape(len(chunk), -1).copy())
    return np.concatenate(outs)


def run_raw_loop(case: Case, files: list[Path], cores: int, batch: int) -> tuple[float, np.ndarray]:
    import zoo

    pre, input_name = _preprocessor(case)
    sess = _session(zoo.cut(case.name, 1), cores)
    started = time.perf_counter()
    features = _featurize_files(sess, pre, input_name, files, batch)
    return time.perf_counter() - started, features


def _bound_worker(name: str, files: list[Path], barrier, zoo_home: str) -> tuple[float, np.ndarray]:
    """One bare process doing a Spark task's work on its share of the files (see :func:`run_bound`)."""
    os.environ["ZOO_HOME"] = zoo_home
    import zoo
    from zoo.runtime.sessions import rows_per_call

    pre, input_name = _preprocessor(Case(name, name, ""))
    sess = _session(zoo.cut(name, 1), 1)
    step = rows_per_call(0, "cpu")
    sess.run(None, {input_name: np.zeros((step, *pre.row_shape), pre.dtype)})  # warm-up, not timed
    barrier.wait()
    started = time.perf_counter()
    features = _featurize_files(sess, pre, input_name, files, step)
    return time.perf_counter() - started, features


def run_bound(case: Case, files: list[Path], cores: int, batch: int) -> tuple[float, np.ndarray]:
    """What sparkzoo's executors could reach without Spark: ``cores`` bare processes side by side, each
    doing a task's work on its share of the files (read, decode, prepare, ONNX Runtime on one thread at
    sparkzoo's batch size), timed from a common start to the last one's end. Unlike the ceiling it
    decodes and prepares every image, on the same cores."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    with context.Manager() as manager, context.Pool(cores) as pool:
        barrier = manager.Barrier(cores)
        shares = [list(range(k, len(files), cores)) for k in range(cores)]
        results = pool.starmap(_bound_worker, [(case.name, [files[k] for k in share], barrier, os.environ["ZOO_HOME"])
                                               for share in shares])
    features = np.empty((len(files), results[0][1].shape[1]), np.float32)
    for share, (_, out) in zip(shares, results):
        features[share] = out
    return max(seconds for seconds, _ in results), features


# -- Spark methods -----------------------------------------------------------------------------------------
def _spark(master: str, extra: dict[str, str] | None = None):
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("bench").config("spark.ui.enabled", "false")
               .config("spark.driver.memory", "4g").config("spark.ui.showConsoleProgress", "false"))
    for k, v in (extra or {}).items():
        builder = builder.config(k, v)
    active = SparkSession.getActiveSession()
    if active is not None and any(active.sparkContext.getConf().get(k, None) != v for k, v in (extra or {}).items()):
        active.stop()  # a smoke run shares one session, but these settings need a context of their own
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _timed_write(df, out: Path) -> float:
    started = time.perf_counter()
    df.write.mode("overwrite").parquet(str(out))
    return time.perf_counter() - started


def _read_features(spark, out: Path, files: list[Path]) -> np.ndarray:
    rows = {os.path.basename(r["path"]): r["features"] for r in spark.read.parquet(str(out)).collect()}
    return np.array([rows[f.name] for f in files], np.float32)


def spark_peer(spark, case: Case, folder: Path, out: Path, batch: int) -> float:
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import zoo

    pre, input_name = _preprocessor(case)
    cut_path = str(zoo.cut(case.name, 1))
    spec, shape = pre.spec, list(pre.row_shape)
    model_input = zoo.info(case.name)["input"]

    @F.pandas_udf(T.ArrayType(T.FloatType()))
    def decode(content: pd.Series) -> pd.Series:
        import cv2

        from zoo.runtime.imaging import Preprocessor

        p = Preprocessor(spec, model_input)
        row = np.empty(p.row_shape, np.float32)

        def one(data):
            p(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), row)
            return row.ravel().copy()

        return content.map(one)

    def make_predict_fn():
        import onnxruntime as ort

        sess = ort.InferenceSession(cut_path, providers=["CPUExecutionProvider"])  # defaults, as users write it

        def predict(x: np.ndarray) -> np.ndarray:
            return sess.run(None, {input_name: x})[0].reshape(len(x), -1)

        return predict

    predict = predict_batch_udf(make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=batch,
                                input_tensor_shapes=[shape])
    df = spark.read.format("binaryFile").load(str(folder))
    return _timed_write(df.select("path", predict(decode("content")).alias("features")), out)


def spark_naive(spark, case: Case, folder: Path, out: Path, batch: int) -> float:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import zoo

    pre, input_name = _preprocessor(case)
    cut_path, spec, model_input = str(zoo.cut(case.name, 1)), pre.spec, zoo.info(case.name)["input"]
    state: dict[str, Any] = {}

    @F.udf(T.ArrayType(T.FloatType()))
    def featurize(data):
        import cv2
        import onnxruntime as ort

        from zoo.runtime.imaging import Preprocessor

        if "sess" not in state:  # loaded lazily, once per worker process, with default options
            state["sess"] = ort.InferenceSession(cut_path, providers=["CPUExecutionProvider"])
            state["pre"] = Preprocessor(spec, model_input)
        x = np.empty((1, *state["pre"].row_shape), np.float32)
        state["pre"](cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), x[0])
        return state["sess"].run(None, {input_name: x})[0].ravel().tolist()

    df = spark.read.format("binaryFile").load(str(folder))
    return _timed_write(df.select("path", featurize("content").alias("features")), out)


def spark_zoo(spark, case: Case, folder: Path, out: Path, batch: int, fast_decode: bool = False,
              content: bool | None = None) -> float:
    """``zoo.pipeline``; ``fast_decode`` is the ``fast`` row (reduced JPEG decoding: pixels differ slightly),
    ``content=True`` the ``bytes`` row."""
    import zoo

    df = zoo.read_images(spark, str(folder), content=content)
    model = zoo.pipeline(case.name, cut=1, outputFormat="array", batchSize=batch,  # 0 = sparkzoo's default
                         fastDecode=fast_decode).fit(df)
    return _timed_write(model.transform(df).select("path", "features"), out)


def memory_target(case: Case, batch_size: int) -> int:
    """The issue's bound on a worker's peak RSS: model file + 2 x one batch's input tensors + 300 MB."""
    import zoo
    from zoo.runtime.sessions import rows_per_call

    pre, _ = _preprocessor(case)
    rows = rows_per_call(batch_size, "cpu")
    return zoo.cut(case.name, 1).stat().st_size + 2 * rows * int(np.prod(pre.row_shape)) * 4 + 300 * 10**6


def worker_stats(spark) -> list[dict[str, int]]:
    """Model loads and peak RSS (VmHWM) of every Arrow Python worker of this session."""

    def report(batches):
        import pyarrow as pa

        import zoo as z

        for _ in batches:
            pass
        hwm = 0
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "loads": [z.model_loads()], "peak_rss": [hwm]})

    rows = spark.range(0, 64, 1, 64).mapInArrow(report, "pid long, loads long, peak_rss long").collect()
    return sorted({r["pid"]: {"pid": r["pid"], "loads": r["loads"], "peak_rss": r["peak_rss"]} for r in rows}.values(),
                  key=lambda d: d["pid"])


# -- the run -----------------------------------------------------------------------------------------------
def bench_case(case: Case, files: list[Path], folder: Path, args, out: Path) -> dict[str, Any]:
    cores, batch = args.cores, args.batch_size
    result: dict[str, Any] = {"model": case.name, "label": case.label, "note": case.note, "images": len(files), "methods": {}}
    seconds: dict[str, float] = {}  # the median of the timed runs
    runs: dict[str, list[float]] = {}
    features: dict[str, np.ndarray] = {}
    last_ceiling: list[float] = []  # the ceiling's latest timed runs
    adjacent: dict[str, float] = {}  # a Spark method: the ceiling's median over the runs just before and after it
    task_cpus: dict[str, int] = {}  # a Spark method: its session's spark.task.cpus
    for method in args.methods:
        if method in ("ceiling", "raw", "bound"):
            fn = {"ceiling": run_ceiling, "raw": run_raw_loop, "bound": run_bound}[method]
            for _ in range(args.runs):
                secs, features[method] = fn(case, files, cores, batch)
                runs.setdefault(method, []).append(secs)
            if method == "ceiling":
                last_ceiling = runs[method][-args.runs:]
        else:
            spark_fn: Callable = {"peer": spark_peer, "naive": spark_naive, "sparkzoo": spark_zoo,
                                   "fast": functools.partial(spark_zoo, fast_decode=True),
                                   "bytes": functools.partial(spark_zoo, content=True), "wide": spark_zoo}[method]
            spark = _spark(f"local[{cores}]", {"spark.task.cpus": str(cores if method == "wide" else 1)})
            rows = args.zoo_batch_size if method in ("sparkzoo", "fast", "bytes", "wide") else batch
            try:
                target = out / f"features-{case.name}-{method}.parquet"
                if args.repeat > 1:  # a first pass warms the page cache, the JVM's JIT and the workers
                    spark_fn(spark, case, folder, target, rows)
                runs[method] = [spark_fn(spark, case, folder, target, rows) for _ in range(args.runs)]
                task_cpus[method] = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
                features[method] = _read_features(spark, target, files)
                if method == "sparkzoo":
                    result["workers"] = worker_stats(spark)
                    result["memory_target_bytes"] = memory_target(case, args.zoo_batch_size)
            finally:
                if not args.smoke:  # a fresh session per method (its workers, their memory); smoke: share one
                    spark.stop()
            if last_ceiling and not args.smoke:  # this VM drifts by a fifth over minutes: compare with the ceiling measured next to it
                before, last_ceiling = last_ceiling, [run_ceiling(case, files, cores, batch)[0] for _ in range(args.runs)]
                adjacent[method] = float(np.median(before + last_ceiling))
        seconds[method] = float(np.median(runs[method]))
        rates = sorted(len(files) / t for t in runs[method])
        print(f"  {case.name:24} {method:9} {len(files) / seconds[method]:8.1f} img/s  "
              f"(runs: {', '.join(f'{r:.1f}' for r in rates)})", flush=True)
    reference = features.get("raw", features.get("ceiling"))
    for method, secs in seconds.items():
        rates = sorted(len(files) / t for t in runs[method])
        entry = {"seconds": round(secs, 3), "images_per_second": round(len(files) / secs, 2),
                 "runs_images_per_second": [round(r, 2) for r in rates], "spread": round(rates[-1] - rates[0], 2)}
        if "ceiling" in seconds:
            entry["vs_ceiling"] = round(seconds["ceiling"] / secs, 3)
        if method in task_cpus:
            entry["task_cpus"] = task_cpus[method]
        if method in adjacent:
            entry["vs_adjacent_ceiling"] = round(adjacent[method] / secs, 3)
        if "peer" in seconds:
            entry["vs_peer"] = round(seconds["peer"] / secs, 3)
        if "raw" in seconds:
            entry["vs_raw_loop"] = round(seconds["raw"] / secs, 3)
        if reference is not None:
            entry["max_abs_diff_vs_raw_loop"] = float(np.max(np.abs(features[method] - reference)))
            a, b = features[method], reference
            cos = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            entry["min_cosine_vs_raw_loop"] = round(float(np.min(cos)), 5)
        result["methods"][method] = entry
    return result


def scaling(case: Case, folder: Path, files: list[Path], args, out: Path) -> list[dict[str, Any]]:
    points = []
    for executors in (1, 2):
        spark = _spark(f"local-cluster[{executors},1,2048]", {"spark.executor.memory": "1536m"})
        try:
            target = out / f"scaling-{executors}.parquet"
            spark_zoo(spark, case, folder, target, args.zoo_batch_size)
            secs = spark_zoo(spark, case, folder, target, args.zoo_batch_size)
        finally:
            spark.stop()
        points.append({"executors": executors, "seconds": round(secs, 3), "images_per_second": round(len(files) / secs, 2)})
        print(f"  scaling {executors} executor(s): {len(files) / secs:.1f} img/s", flush=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        xs = [p["executors"] for p in points]
        ax.plot(xs, [p["images_per_second"] for p in points], "o-", label="sparkzoo")
        ax.plot(xs, [points[0]["images_per_second"] * x for x in xs], "--", color="grey", label="linear")
        ax.set_xlabel("executors (1 core each)")
        ax.set_ylabel("images / second")
        ax.set_xticks(xs)
        ax.set_title(case.label, fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=120)
    except ImportError:
        print("  (matplotlib not installed: pip install 'sparkzoo[bench]' for scaling.png)")
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--models", default="resnet50,mobilenet")
    parser.add_argument("--methods", default="ceiling,raw,bound,peer,naive,sparkzoo,bytes,wide,fast",
                        help="fast = sparkzoo with fastDecode=True (reduced JPEG decoding); bytes = read_images(content=True); "
                             "wide = spark.task.cpus = cores")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per ONNX Runtime call in the baselines")
    parser.add_argument("--zoo-batch-size", type=int, default=0, help="sparkzoo's batchSize (0 = its automatic default)")
    parser.add_argument("--runs", type=int, default=1, help="timed runs per method (median reported, and the spread)")
    parser.add_argument("--repeat", type=int, default=2, help="Spark methods: 1 = time the only run, 2 = warm then time")
    parser.add_argument("--scaling", action="store_true", help="also run 1 vs 2 executors on local-cluster (+ PNG)")
    parser.add_argument("--kinds", default="large,photos",
                        help="large: 800x600 JPEGs made from the shared photos; photos: the shared photos as they are")
    parser.add_argument("--smoke", action="store_true", help="24 images of each kind, MobileNet only, one run each (CI)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared material (photos, MobileNet)")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.models, args.repeat = 24, "mobilenet", 1
    args.methods = args.methods.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ZOO_HOME", str(args.out / "zoo-home"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("ZOO_TIMEOUT", "5")
    os.environ.setdefault("ZOO_RETRIES", "0")

    inputs = {}
    for kind in args.kinds.split(","):
        if kind not in KINDS:
            raise SystemExit(f"unknown image kind {kind!r}; choose from {', '.join(KINDS)}")
        folder = args.out / (f"images-{args.images}" if kind == "large" else f"photos-{args.images}")
        make = make_images if kind == "large" else photo_copies
        inputs[kind] = (folder, make(args.images, folder, photos=args.shared / PHOTOS))
    cases = register_models(args.models.split(","), args.out, args.shared)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "commit": commit, "images": args.images, "kinds": {k: KINDS[k] for k in inputs},
        "cores": args.cores, "batch_size": args.batch_size, "zoo_batch_size": args.zoo_batch_size, "cases": [],
    }
    for kind, (folder, files) in inputs.items():
        print(f"{kind}: {len(files)} images in {folder}; {args.cores} cores; commit {commit}")
        for case in cases:
            print(f"{case.label}: {case.note}")
            report["cases"].append({"kind": kind, **bench_case(case, files, folder, args, args.out / kind)})
    if args.scaling and cases:
        folder, files = next(iter(inputs.values()))
        report["scaling"] = {"model": cases[0].name, "points": scaling(cases[0], folder, files, args, args.out)}

    print()
    print(f"{'kind':7} {'model':26} {'method':9} {'img/s':>8} {'vs ceiling':>11} {'adjacent':>9} {'vs peer':>8} {'vs raw':>7} {'max |diff|':>11} "
          f"{'min cos':>8}")
    for case in report["cases"]:
        for method, m in case["methods"].items():
            print(f"{case['kind']:7} {case['model']:26} {method:9} {m['images_per_second']:8.1f} {m.get('vs_ceiling', float('nan')):11.3f} "
                  f"{m.get('vs_adjacent_ceiling', float('nan')):9.3f} {m.get('vs_peer', float('nan')):8.3f} {m.get('vs_raw_loop', float('nan')):7.3f} "
                  f"{m.get('max_abs_diff_vs_raw_loop', float('nan')):11.2e} {m.get('min_cosine_vs_raw_loop', float('nan')):8.5f}")
        for w in case.get("workers", []):
            print(f"  sparkzoo worker pid {w['pid']}: {w['loads']} model load(s), peak RSS {w['peak_rss'] / 2**20:.0f} MiB "
                  f"(target <= {case['memory_target_bytes'] / 2**20:.0f} MiB)")
    print("targets: sparkzoo (defaults) >= 0.92x ceiling (ResNet-50, both kinds), >= 1.8x peer (photos); "
          "MobileNet v2 int8 >= 1.2x raw loop")
    (args.out / "featurize.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'featurize.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
