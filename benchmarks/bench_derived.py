"""What verifying derived files costs (issue 34): ResNet-50's optimised graph checked before it loads.

Each Python worker that loads a model checks the node's optimised file once (``zoo.hub.derived``):
the record (read, parsed, its checksum and inputs), the file's sha256 (about 100 MB, re-hashed once
per process), its stamp, and the open descriptor it then loads through. This measures that check
against the work it guards, in one run on one machine:

* ``check_s``: median of ``--repeat`` checks, each as a fresh process makes it (the per-process hash
  memo cleared; the file in the page cache, as it is right after the first worker built it);
* ``load_s``: loading the session from the checked file (what every worker pays anyway);
* ``image_s``: ONNX Runtime on one 224x224 image, one thread (compute only: decoding adds to a real
  featurization, so the ratios below are upper bounds);
* ``share_of_1000``: the check against 1,000 photos featurized on ``--cores`` cores, one worker per
  core each checking once: ``check_s / (1000 / cores * image_s)``; target < 2 %;
* ``table_check_s``: the driver's once-per-process check of a recorded layer table (the graph read
  and walked, not run) and ``stamp_check_s``: a cut model blob's stamp (top-level fields only).

    python benchmarks/bench_derived.py [--repeat 7] [--cores N] [--out derived.json] [--small]

``--small`` uses a small ResNet-like network instead of ResNet-50 (the CI smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _model(small: bool) -> bytes:
    if small:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _models import resnet_like

        return resnet_like(seed=1, size=64)
    import _resnet50

    return _resnet50.build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import hashlib

    import onnxruntime as ort

    from zoo.hub import derived, layer_cuts, optimized
    from zoo.hub.cache import ModelCache

    work = Path(tempfile.mkdtemp(prefix="zoo-bench-derived-"))
    cache = ModelCache(work / "home")
    data = _model(args.small)
    sha = hashlib.sha256(data).hexdigest()
    model = work / "model.onnx"
    model.write_bytes(data)

    def create(path: str):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    started = time.perf_counter()
    assert optimized.load(model, sha, cache, create) is not None, "the optimised file could not be built"
    build_s = time.perf_counter() - started
    d = optimized.derivation(sha)
    record = derived.read(cache, d)
    path = cache.optimized_path(record.output.sha256)

    checks, loads = [], []
    for _ in range(args.repeat):
        derived._VERIFIED.clear()  # as a fresh worker process: the file is hashed again
        t0 = time.perf_counter()
        rec = derived.read(cache, d)
        with derived.opened(path, rec.output, d, single_link=True) as loadable:
            t1 = time.perf_counter()
            sess = create(loadable)
            t2 = time.perf_counter()
        checks.append(t1 - t0)
        loads.append(t2 - t1)

    inp = sess.get_inputs()[0]
    shape = [1, *[d if isinstance(d, int) else 224 for d in inp.shape[1:]]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    sess.run(None, {inp.name: x})
    runs = []
    for _ in range(max(5, args.repeat)):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        runs.append(time.perf_counter() - t0)

    cuts = layer_cuts.cached_analysis(cache, sha, model, None)  # analysed once and recorded
    tables = []
    for _ in range(args.repeat):
        layer_cuts._CHECKED.clear()  # as a fresh driver process: the recorded table is checked again
        t0 = time.perf_counter()
        layer_cuts.cached_analysis(cache, sha, model, None)
        tables.append(time.perf_counter() - t0)
    cut_sha, _ = layer_cuts.cut_blob(cache, sha, model, cuts[1])
    stamps = []
    cd = layer_cuts.cut_derivation(sha, cuts[1])
    for _ in range(args.repeat * 10):
        t0 = time.perf_counter()
        assert derived.blob_stamp_problem(cache, cut_sha, cd) is None
        stamps.append(time.perf_counter() - t0)

    check_s, image_s = statistics.median(checks), statistics.median(runs)
    result = {
        "model": "resnet-like (small)" if args.small else "ResNet-50 v1 (seeded weights, fp32)",
        "optimised_bytes": path.stat().st_size,
        "cores": args.cores,
        "build_s": round(build_s, 3),
        "check_s": round(check_s, 4), "check_range_s": [round(min(checks), 4), round(max(checks), 4)],
        "load_s": round(statistics.median(loads), 4),
        "image_s": round(image_s, 5),
        "share_of_1000": round(check_s / (1000 / args.cores * image_s), 5),
        "share_of_load": round(check_s / statistics.median(loads), 3),
        "table_check_s": round(statistics.median(tables), 4),
        "stamp_check_s": round(statistics.median(stamps), 6),
        "hash_mb_s": round(path.stat().st_size / 2**20 / check_s, 1),
    }
    print(f"{result['model']}: optimised file {result['optimised_bytes'] / 2**20:.1f} MiB (built in {build_s:.1f} s)")
    print(f"  check once per worker  {check_s * 1000:8.1f} ms  (range {min(checks) * 1000:.1f}-{max(checks) * 1000:.1f};"
          f" {result['hash_mb_s']} MiB/s)")
    print(f"  session load           {result['load_s'] * 1000:8.1f} ms  (the check is {result['share_of_load']:.0%} of it)")
    print(f"  one image, one thread  {image_s * 1000:8.1f} ms  (compute only)")
    print(f"  1,000 photos on {args.cores} cores: the check is {result['share_of_1000']:.2%} (target < 2 %)")
    print(f"  layer table check      {result['table_check_s'] * 1000:8.1f} ms  (driver, once per process)")
    print(f"  cut model stamp check  {result['stamp_check_s'] * 1e6:8.1f} us")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
