"""A model over protobuf's 2 GB limit, end to end: served, pulled, bundled, cut and run.

    python benchmarks/bench_large_model.py                 # a 2.25 GB model (two weight files)
    python benchmarks/bench_large_model.py --gib 0.25      # quicker

The model is made here: a two-layer MLP (MatMul -> Relu -> MatMul) whose first weight alone is
``--gib`` GiB of float32, saved the way every exporter saves such a model (the graph file and its
weights in external data files). A loopback HTTP server serves the three files; a fresh ZOO_HOME
pulls the registry entry (every file streamed, hashed, published; the bundle of hard links made),
the layer analysis and cut 1 are built (the cut graph refers to the same weight file), and ONNX
Runtime runs the model from its bundle; its output is compared with numpy on the same weights.

Reported: seconds and MB/s for the pull, seconds for a cache hit, for the analysis and the cut,
the cut graph's size, the bundle's extra disk use (hard links: none), the process's peak RSS, and
the largest difference from numpy. Nothing here may serialise the weights into one protobuf: a
model over 2 GB fails loudly where that happens.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_model(folder: Path, gib: float, hidden: int = 4096) -> tuple[Path, dict[str, np.ndarray]]:
    """graph.onnx + w1.bin (``gib`` GiB) + w2.bin in ``folder``; returns the graph path and small weights."""
    from onnx import TensorProto, helper

    inputs = max(1, int(gib * (1 << 30) / 4 / hidden))
    rng = np.random.default_rng(0)
    w2 = rng.normal(0, 0.05, (hidden, 16)).astype(np.float32)
    # write w1 in slices (never 2 GB in memory twice): a seeded pattern numpy can recompute per row
    with open(folder / "w1.bin", "wb") as fh:
        for start in range(0, inputs, 4096):
            rows = np.arange(start, min(start + 4096, inputs), dtype=np.float32)[:, None]
            fh.write((np.sin(rows * 0.001 + np.arange(hidden, dtype=np.float32) * 0.01) * 0.01).astype(np.float32).tobytes())
    (folder / "w2.bin").write_bytes(w2.tobytes())

    def external(name: str, shape: tuple[int, ...], location: str, length: int):
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape), data_location=TensorProto.EXTERNAL)
        for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
            t.external_data.add(key=key, value=value)
        return t

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
         helper.make_node("MatMul", ["hr", "w2"], ["y"])],
        "large_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
        [external("w1", (inputs, hidden), "w1.bin", inputs * hidden * 4),
         external("w2", (hidden, 16), "w2.bin", hidden * 16 * 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    (folder / "graph.onnx").write_bytes(model.SerializeToString())
    return folder / "graph.onnx", {"w2": w2, "inputs": np.array(inputs), "hidden": np.array(hidden)}


def numpy_reference(x: np.ndarray, w1_path: Path, inputs: int, hidden: int, w2: np.ndarray) -> np.ndarray:
    w1 = np.memmap(w1_path, np.float32, "r", shape=(inputs, hidden))
    return np.maximum(x.astype(np.float64) @ w1, 0) @ w2


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.25, help="size of the first weight file in GiB (default 2.25)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="zoo-large-"))
    served = work / "served"
    served.mkdir()
    t0 = time.perf_counter()
    graph, small = make_model(served, args.gib)
    made = time.perf_counter() - t0
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"

    def pinned(name: str) -> dict:
        p = served / name
        return {"sha256": sha256_file(p), "bytes": p.stat().st_size, "sources": [f"{base}/{name}"]}

    g = pinned("graph.onnx")
    entry = {"name": "large-mlp", "description": "a generated MLP over 2 GB", "license": "MIT", "task": "feature-extraction",
             "format": "onnx", "sha256": g["sha256"], "bytes": g["bytes"], "sources": g["sources"],
             "preprocess": None, "labels": None, "external_data": {n: pinned(n) for n in ("w1.bin", "w2.bin")}}
    (work / "registry.json").write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    os.environ.update(ZOO_HOME=str(work / "home"), ZOO_REGISTRY=str(work / "registry.json"), ZOO_ALLOW_HTTP="127.0.0.1",
                      ZOO_PROGRESS="0")
    sys.path.insert(0, str(REPO))
    import onnxruntime as ort

    import zoo

    total = sum(f["bytes"] for f in entry["external_data"].values()) + entry["bytes"]
    t0 = time.perf_counter()
    path = zoo.pull("large-mlp")
    pull_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert zoo.pull("large-mlp") == path
    hit_s = time.perf_counter() - t0
    home = work / "home"
    links = all(os.path.samefile(f, home / "blobs" / "sha256" / sha256_file(f)) for f in path.parent.iterdir())

    t0 = time.perf_counter()
    cuts = zoo.cuts("large-mlp")
    analysis_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cut = zoo.cut("large-mlp", 1)
    cut_s = time.perf_counter() - t0

    inputs, hidden = int(small["inputs"]), int(small["hidden"])
    x = np.random.default_rng(1).normal(size=(2, inputs)).astype(np.float32)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    got = sess.run(None, {"x": x})[0]
    want = numpy_reference(x, served / "w1.bin", inputs, hidden, small["w2"])
    diff = float(np.abs(got - want).max() / (np.abs(want).max() or 1))
    cut_out = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    result = {
        "model_bytes": total, "weights_gib": args.gib, "generate_s": round(made, 1),
        "pull_s": round(pull_s, 1), "pull_MBps": round(total / pull_s / 1e6, 1), "cache_hit_s": round(hit_s, 3),
        "bundle_is_hard_links": links, "analysis_s": round(analysis_s, 1), "cuts": [c.tensor for c in cuts],
        "cut_s": round(cut_s, 1), "cut_graph_bytes": cut.stat().st_size, "cut_output_shape": list(cut_out.shape),
        "ort_load_s": round(load_s, 1), "max_rel_diff_vs_numpy": diff,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20), 2),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    httpd.shutdown()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0 if diff < 1e-4 and links else 1


if __name__ == "__main__":
    sys.exit(main())
