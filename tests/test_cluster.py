"""sparkzoo on a real Spark standalone cluster: a master and two workers on loopback, each worker
with its own ZOO_HOME (two "nodes"); the driver runs in its own process, as spark-submit would.

Model delivery is checked three ways against a real loopback HTTP server: (b) shipped from the
driver while the source answers 503 to anyone else, (a) downloaded by each node from the source,
at most once per node, (c) served from the warm node caches with no download at all. Features
must equal local mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import zoo
from _cluster import StandaloneCluster
from conftest import MOBILENET, entry, missing
from zoo._presets import IMAGENET

SHARED_PHOTOS = MOBILENET.parents[1] / "data" / "imagenet-sample"

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
    from zoo import _runtime

    def choose(_):
        assigned = TaskContext.get().resources()["gpu"].addresses
        yield assigned, _runtime.cuda_device(required=True)

    result = spark.sparkContext.parallelize(range(4), 4).mapPartitions(choose).collect()
    spark.stop()
    with open(out, "w") as fh:
        json.dump({"gpu": result}, fh)
    sys.exit(0)
df = zoo.read_images(spark, images)
model = zoo.pipeline("mnv2-cluster", cut=1, outputFormat="array", shipModel=(mode == "ship")).fit(df)
rows = model.transform(df).select("path", "features").collect()
result = {"features": {r["path"].rsplit("/", 1)[-1]: r["features"] for r in rows}}
if mode == "kill":  # written once to parquet while the test kills an executor mid-download
    model.transform(df).select("path", "features").write.parquet(out + ".parquet")
    rows = spark.read.parquet(out + ".parquet").collect()
    result["written"] = [r["path"].rsplit("/", 1)[-1] for r in rows]
    result["features"] = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in rows}
if mode == "ship":  # a saved PipelineModel loads and runs on the cluster too
    model.write().overwrite().save(out + ".model")
    again = PipelineModel.load(out + ".model").transform(df).select("path", "features").collect()
    result["reloaded"] = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in again}
spark.stop()
with open(out, "w") as fh:
    json.dump(result, fh)
"""


@pytest.fixture
def photos(tmp_path):
    if not SHARED_PHOTOS.exists():
        missing("the shared photos are not beside the checkout")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(SHARED_PHOTOS.glob("*.JPEG"))[:12]:
        shutil.copyfile(p, folder / p.name)
    return folder


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


def _blob_names(home):
    d = home / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_pipeline_on_a_standalone_cluster_gets_models_three_ways(spark, server, zoo_env, write_registry, mobilenet_bytes,
                                                                 photos, tmp_path):
    url = server.add("/models/mnv2.onnx", mobilenet_bytes)
    registry = write_registry(entry("mnv2-cluster", mobilenet_bytes, [url], preprocess=IMAGENET))
    local_df = zoo.read_images(spark, str(photos))
    local = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in
             zoo.pipeline("mnv2-cluster", cut=1, outputFormat="array").fit(local_df).transform(local_df).collect()}
    driver_home = zoo_env  # the local run above filled the driver's cache: one download
    downloads = lambda: len([r for r in server.gets("/models/mnv2.onnx") if r.status in (200, 206)])  # noqa: E731
    assert downloads() == 1

    common = {"ZOO_ALLOW_HTTP": "127.0.0.1", "ZOO_TIMEOUT": "5", "ZOO_RETRIES": "0", "ZOO_PROGRESS": "0",
              "PYSPARK_PYTHON": sys.executable}
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    driver_env = {**os.environ, **common, "ZOO_HOME": str(driver_home), "ZOO_REGISTRY": str(registry)}

    def run(mode: str, during=None) -> dict:
        out = tmp_path / f"{mode}.json"
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.url, str(photos), mode, str(out)],
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

    # each node advertises one GPU through a discovery script (a fake at the hardware edge: there is no GPU
    # here), with different addresses so a task that silently defaulted to GPU 0 would show
    workers = []
    for i, home in enumerate(nodes):
        script = tmp_path / f"gpus{i}.sh"
        script.write_text(f'#!/bin/sh\necho \'{{"name": "gpu", "addresses": ["{3 + 2 * i}"]}}\'\n')
        script.chmod(0o755)
        opts = f"-Dspark.worker.resource.gpu.amount=1 -Dspark.worker.resource.gpu.discoveryScript={script}"
        workers.append({**common, "ZOO_HOME": str(home), "SPARK_WORKER_OPTS": opts})
    with StandaloneCluster(tmp_path / "cluster", workers) as cluster:
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

        # (a) no shipping: each node downloads the source once and builds the cut itself
        downloaded = run("source")
        same_as_local(downloaded["features"])
        assert 1 <= downloads() - 1 <= len(nodes), "at most one download per node"
        busy = [h for h in nodes if _blob_names(h)]
        assert busy and downloads() - 1 == len(busy)

        # (c) warm node caches: nothing is downloaded again
        before = downloads()
        warm = run("warm")
        same_as_local(warm["features"])
        assert downloads() == before

        # fault tolerance: cold nodes, a slow source, and one executor SIGKILLed while it downloads
        for home in nodes:
            shutil.rmtree(home, ignore_errors=True)
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
        same_as_local(survived["features"])
        for home in nodes:  # every published blob is whole and verified
            for blob in home.glob("blobs/sha256/*"):
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
        daemons = [proc for proc, _ in cluster.procs]
    assert daemons and all(proc.poll() is not None for proc in daemons), "the cluster must stop completely"
    for home in nodes:  # no half-written cache entry anywhere
        assert list(home.glob("tmp/*.part")) == []
