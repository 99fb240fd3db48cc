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
3. features GPU vs CPU features of the same images: max |diff|, max relative error, min cosine.

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
sys.path.insert(0, str(REPO))


def _import_without_spark() -> None:
    """Make ``zoo.*`` modules importable where pyspark is not installed (the GPU machine)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
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


def _job(spec, device: str, threads: int, batch: int):
    from zoo.runtime.sessions import RuntimeOptions
    from zoo.stages.workers.image_input import ImageInput
    from zoo.stages.workers.images import ImageJob

    return ImageJob(spec=spec, image=ImageInput("content", "binary", "path", 64_000_000), batch_size=batch,
                    runtime=RuntimeOptions(device=device, intra_op_threads=threads), handle_invalid="error",
                    error_col="error", output_col="features", stage="image_featurizer")


def featurize(spec, files: list[Path], device: str, threads: int, batch: int, ready=None) -> tuple[float, np.ndarray]:
    """Seconds and features of the executor function over ``files``: one warm-up batch first, not
    timed, then ``ready()`` (e.g. a barrier shared with other workers) before the clock starts."""
    from zoo.stages.workers.images import featurize_images

    job = _job(spec, device, threads, batch)
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
    diff = np.abs(gpu_f - cpu_f)
    cosine = (gpu_f * cpu_f).sum(1) / (np.linalg.norm(gpu_f, axis=1) * np.linalg.norm(cpu_f, axis=1) + 1e-12)
    agreement = {"max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / (np.abs(cpu_f) + 1e-3)).max()),
                 "min_cosine": float(cosine.min()), "feature_scale": float(np.abs(cpu_f).max())}
    print(f"\n{'method':32} {'img/s':>9} {'x executor cpu':>15}")
    for name, value in rows.items():
        print(f"{name:32} {value:9.1f} {value / rows['executor cpu']:15.2f}")
    print("\nGPU vs CPU features:", json.dumps(agreement))
    result = {"images": len(files), "gpu_batch": args.batch, "cpu_batch": cpu_batch, "cores": cores,
              "machine": platform.node(), "onnxruntime": ort.__version__, "img_per_s": rows, "agreement": agreement}
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
