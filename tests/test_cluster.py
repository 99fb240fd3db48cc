"""sparkzoo on a real Spark standalone cluster: a master and two workers on loopback, started with
README's commands, each worker with its own ZOO_HOME (two "nodes") and nothing else of sparkzoo's
in its environment (the driver's settings must reach executors by forwarding); the driver runs in
its own process, as spark-submit would.

Model delivery is checked three ways against a real loopback HTTP server: (b) shipped from the
driver while the source answers 503 to anyone else, (a) downloaded by each node from the source,
at most once per node, (c) served from the warm node caches with no download at all. Features
must equal local mode. The README walkthrough is in test_cluster_walkthrough.py (its own cluster,
so the two modules run side by side under pytest-xdist).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import zoo
from _cluster import _blob_names, _cold
from conftest import entry
from zoo.hub.presets import IMAGENET

DRIVER = r"""
import json, sys
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
import zoo

url, images, mode, out = sys.argv[1:5]
builder = (SparkSession.builder.master(url).appName(f"zoo-cluster-{mode}")
           .config("spark.executor.cores", "1").config("spark.cores.max", "2").config("spark.executor.memory", "700m")
           .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
           .config("spark.pyspark.python", sys.executable).config("spark.ui.enabled", "false"))
if mode == "gpu":  # the README's GPU settings: one GPU per executor, one per task
    builder = builder.config("spark.executor.resource.gpu.amount", "1").config("spark.task.resource.gpu.amount", "1")
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
if mode == "gpu":  # which GPU each task would give ONNX Runtime
    from pyspark import TaskContext
    from zoo.runtime import sessions

    def choose(_):
        assigned = TaskContext.get().resources()["gpu"].addresses
        yield assigned, sessions.cuda_device(required=True)

    result = spark.sparkContext.parallelize(range(4), 4).mapPartitions(choose).collect()
    spark.stop()
    with open(out, "w") as fh:
        json.dump({"gpu": result}, fh)
    sys.exit(0)
df = zoo.read_images(spark, images)
with zoo.cluster.watch(spark) as watched:
    model = zoo.pipeline("mnv2-cluster", cut=1, outputFormat="array", shipModel=(mode == "ship")).fit(df)
    if mode == "kill":  # written once to parquet while the test kills an executor mid-download
        model.transform(df).select("path", "features").write.parquet(out + ".parquet")
        rows = spark.read.parquet(out + ".parquet").collect()
    else:
        rows = model.transform(df).select("path", "features").collect()
result = {"features": {r["path"].rsplit("/", 1)[-1]: r["features"] for r in rows},
          "written": [r["path"].rsplit("/", 1)[-1] for r in rows],
          "failures": watched.failures, "nodes": [str(n) for n in watched.nodes]}
if mode == "ship":  # a saved PipelineModel loads and runs on the cluster too
    model.write().overwrite().save(out + ".model")
    again = PipelineModel.load(out + ".model").transform(df).select("path", "features").collect()
    result["reloaded"] = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in again}
spark.stop()
with open(out, "w") as fh:
    json.dump(result, fh)
"""


def _executor_of(home) -> int | None:
    """The pid of the executor JVM whose node (ZOO_HOME) is ``home``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"CoarseGrainedExecutorBackend" in cmd and f"ZOO_HOME={home}".encode() in env:
            return int(pid)
    return None


@pytest.mark.timeout(600)  # six Spark applications in a row, beside other test files under xdist
def test_pipeline_on_a_standalone_cluster_gets_models_three_ways(cluster, spark, server, zoo_env, write_registry,
                                                                 mobilenet_bytes, photos, tmp_path):
    url = server.add("/models/mnv2.onnx", mobilenet_bytes)
    registry = write_registry(entry("mnv2-cluster", mobilenet_bytes, [url], preprocess=IMAGENET))
    local_df = zoo.read_images(spark, str(photos))
    local = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in
             zoo.pipeline("mnv2-cluster", cut=1, outputFormat="array").fit(local_df).transform(local_df).collect()}
    driver_home = zoo_env  # the local run above filled the driver's cache: one download
    cut_sha = zoo.cut("mnv2-cluster", 1).name
    downloads = lambda: len([r for r in server.gets("/models/mnv2.onnx") if r.status in (200, 206)])  # noqa: E731
    assert downloads() == 1

    running, nodes = cluster
    _cold(nodes)
    # ZOO_ALLOW_HTTP (the source is plain http on loopback), ZOO_TIMEOUT, ...: on the driver only, forwarded
    driver_env = {**os.environ, "ZOO_RETRIES": "0", "ZOO_HOME": str(driver_home), "ZOO_REGISTRY": str(registry)}

    def run(mode: str, during=None) -> dict:
        out = tmp_path / f"{mode}.json"
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, running.url, str(photos), mode, str(out)],
                                env=driver_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if during is not None:
            during()
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-4000:]
        return json.loads(out.read_text())

    def same_as_local(features: dict) -> None:
        assert sorted(features) == sorted(local)
        for name, values in features.items():
            np.testing.assert_allclose(values, local[name], rtol=1e-6, atol=1e-6)

    # GPU scheduling: each task uses the GPU Spark assigned to it
    scheduled = run("gpu")["gpu"]
    assert len(scheduled) == 4
    assert all(assigned == [str(chosen)] for assigned, chosen in scheduled), scheduled
    assert {chosen for _, chosen in scheduled} <= {3, 5}

    # (b) the source refuses everyone: executors must use the file the driver shipped
    server.faults["/models/mnv2.onnx"] = [{"status": 503}] * 50
    shipped = run("ship")
    same_as_local(shipped["features"])
    same_as_local(shipped["reloaded"])
    assert server.gets("/models/mnv2.onnx")[1:] == [], "no executor may have tried the source"
    server.faults.clear()
    busy = [h for h in nodes if _blob_names(h)]
    assert busy and all(_blob_names(h) == [cut_sha] for h in busy), "a shipped model is kept by the node"
    assert all("shipped by the driver" in n for n in shipped["nodes"]), shipped["nodes"]
    _cold(nodes)

    # (a) no shipping: each node downloads the source once and builds the cut itself
    downloaded = run("source")
    same_as_local(downloaded["features"])
    assert 1 <= downloads() - 1 <= len(nodes), "at most one download per node"
    busy = [h for h in nodes if _blob_names(h)]
    assert busy and downloads() - 1 == len(busy)
    # the executors needed the driver's forwarded ZOO_ALLOW_HTTP for this plain-http source, and say what they did
    assert any("downloaded from http://127.0.0.1:" in n and "/models/mnv2.onnx" in n for n in downloaded["nodes"])

    # (c) warm node caches: nothing is downloaded again
    before = downloads()
    warm = run("warm")
    same_as_local(warm["features"])
    assert downloads() == before

    # fault tolerance: cold nodes, a slow source, and one executor SIGKILLed while it downloads
    _cold(nodes)
    server.throttle["/models/mnv2.onnx"] = 1_000_000  # bytes/s: the download takes ~4 s
    killed = []

    def kill_an_executor_mid_download():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for home in nodes:
                if list(home.glob("tmp/*.part")):
                    pid = _executor_of(home)
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(home)
                        return
            time.sleep(0.05)

    survived = run("kill", during=kill_an_executor_mid_download)
    assert killed, "no executor was caught downloading"
    assert sorted(survived["written"]) == sorted(local), "every row featurized exactly once"
    assert any(" was lost (" in line for line in survived["failures"]), survived["failures"]  # reported, not hidden
    assert any("failed on executor" in line for line in survived["failures"]), survived["failures"]
    same_as_local(survived["features"])
    for home in nodes:  # every published blob is whole and verified
        for blob in home.glob("blobs/sha256/*"):
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_check_model_finds_the_node_whose_model_file_went_bad(cluster, tmp_path):
    """Both nodes hold the tiny model in their cache; on node1 one weight of the cached file is changed
    (a disk fault: same size, and a cache hit costs a stat, no hashing). `zoo check-model` must name
    that node and exit 12, and pass the other."""
    from onnx import load_model_from_string, numpy_helper

    from zoo.testing import tiny

    running, nodes = cluster
    _cold(nodes)
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny.tiny_model_bytes())
    pre = json.dumps(tiny.PREPROCESS)
    driver_home = tmp_path / "driver-home"
    for home in [driver_home, *nodes]:
        done = subprocess.run([sys.executable, "-m", "zoo.cli.main", "add", str(model), "--name", "tiny-check",
                               "--preprocess", pre], env={**os.environ, "ZOO_HOME": str(home)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    blob = next(nodes[1].rglob(sha))
    data = bytearray(blob.read_bytes())
    weights = numpy_helper.to_array(load_model_from_string(bytes(data)).graph.initializer[0]).tobytes()
    at = bytes(data).index(weights) + 8
    data[at:at + 4] = np.float32(3.0).tobytes()
    before = blob.stat()
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))  # a silent fault: the cache sees nothing changed
    blob.chmod(before.st_mode)
    env = {**os.environ, "ZOO_HOME": str(driver_home), "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, "-m", "zoo.cli.main", "check-model", "tiny-check", "--cut", "0", "--master",
                           running.url, "--json"], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 12, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert len(report["nodes"]) == 2 and report["failed"] == 1, report
    good, bad = sorted(report["nodes"], key=lambda n: not n["ok"])
    assert good["ok"] and good["min_cosine"] > 0.99999 and good["max_abs_diff"] < 1e-5
    assert not bad["ok"] and "below the tolerance" in bad["problem"]
    assert good["node"] != bad["node"] and "/executor " in bad["node"]
    assert good["versions"]["onnxruntime"] and good["providers"] == ["CPUExecutionProvider"]
