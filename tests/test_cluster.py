"""sparkzoo on a real Spark standalone cluster: a master and two workers on loopback, started with
README's commands, each worker with its own ZOO_HOME (two "nodes") and nothing else of sparkzoo's
in its environment (the driver's settings must reach executors by forwarding); the driver runs in
its own process, as spark-submit would.

Model delivery is checked three ways against a real loopback HTTP server: (b) shipped from the
driver while the source answers 503 to anyone else, (a) downloaded by each node from the source
over a slow link while one executor is killed mid-download (rows exactly once, no node
downloading the whole file twice), (c) served from the warm node caches with no download at all.
Features must equal local mode. The README walkthrough runs "Running on a cluster" line by line:
a model only the driver has (``zoo add``, source file deleted) shipped automatically once per node,
an environment archive from ``zoo cluster-env`` used by submit.sh, and the failures a user sees.
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
from _cluster import README_HEAD, StandaloneCluster, bin_path, readme_block, readme_cluster_commands
from conftest import MOBILENET, REPO, entry, missing
from zoo.hub.presets import IMAGENET

SHARED_PHOTOS = MOBILENET.parents[1] / "data" / "imagenet-sample"

# one pytest-xdist worker runs this whole module (conftest.ONE_WORKER_MODULES): its tests share the cluster
pytestmark = pytest.mark.slow

DRIVER = r"""
import json, sys
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
import zoo

url, images, mode, out = sys.argv[1:5]
modes = set(mode.split("+"))  # "gpu" rides along with a featurizing mode: one application fewer to start
builder = (SparkSession.builder.master(url).appName(f"zoo-cluster-{mode}")
           .config("spark.executor.cores", "1").config("spark.cores.max", "2").config("spark.executor.memory", "700m")
           .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
           .config("spark.pyspark.python", sys.executable).config("spark.ui.enabled", "false"))
if "gpu" in modes:  # the README's GPU settings: one GPU per executor, one per task
    builder = builder.config("spark.executor.resource.gpu.amount", "1").config("spark.task.resource.gpu.amount", "1")
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
result = {}
if "gpu" in modes:  # which GPU each task would give ONNX Runtime
    from pyspark import TaskContext
    from zoo.runtime import sessions

    def choose(_):
        assigned = TaskContext.get().resources()["gpu"].addresses
        yield assigned, sessions.cuda_device(required=True)

    result["gpu"] = spark.sparkContext.parallelize(range(4), 4).mapPartitions(choose).collect()
df = zoo.read_images(spark, images)
with zoo.cluster.watch(spark) as watched:
    model = zoo.pipeline("mnv2-cluster", cut=1, outputFormat="array", shipModel=("ship" in modes)).fit(df)
    if "kill" in modes:  # written once to parquet while the test kills an executor mid-download
        model.transform(df).select("path", "features").write.parquet(out + ".parquet")
        rows = spark.read.parquet(out + ".parquet").collect()
    else:
        rows = model.transform(df).select("path", "features").collect()
result.update(features={r["path"].rsplit("/", 1)[-1]: r["features"] for r in rows},
              written=[r["path"].rsplit("/", 1)[-1] for r in rows],
              failures=watched.failures, nodes=[str(n) for n in watched.nodes])
if "ship" in modes:  # a saved PipelineModel loads and runs on the cluster too
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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two workers (nodes) whose environment holds only their own ZOO_HOME (and a GPU discovery
    script, a fake at the hardware edge: there is no GPU here, and the two nodes advertise different
    addresses so a task that silently defaulted to GPU 0 would show)."""
    tmp = tmp_path_factory.mktemp("cluster")
    nodes = [tmp / "node0", tmp / "node1"]
    workers = []
    for i, home in enumerate(nodes):
        script = tmp / f"gpus{i}.sh"
        script.write_text(f'#!/bin/sh\necho \'{{"name": "gpu", "addresses": ["{3 + 2 * i}"]}}\'\n')
        script.chmod(0o755)
        opts = f"-Dspark.worker.resource.gpu.amount=1 -Dspark.worker.resource.gpu.discoveryScript={script}"
        workers.append({"ZOO_HOME": str(home), "SPARK_WORKER_OPTS": opts})
    with StandaloneCluster(tmp / "cluster", workers) as running:
        yield running, nodes
        daemons = [proc for proc, _ in running.procs]
    assert daemons and all(proc.poll() is not None for proc in daemons), "the cluster must stop completely"
    for home in nodes:  # no half-written cache entry anywhere
        assert list(home.glob("tmp/*.part")) == []


def _cold(nodes) -> None:
    for home in nodes:
        shutil.rmtree(home, ignore_errors=True)


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


def _blob_files(home) -> dict[str, tuple[int, int]]:
    """Each blob's (inode, mtime): a file written again would change them."""
    d = home / "blobs" / "sha256"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.iterdir()} if d.exists() else {}


@pytest.mark.timeout(900)  # a hang guard: three Spark applications in a row, 58 s alone, 97-115 s in the suite
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

    # (a) no shipping: each node downloads the source and builds the cut itself, here over a slow
    # link with one executor SIGKILLed while it downloads (one application for both: each costs a
    # driver and two executors)
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
    server.throttle.clear()
    assert killed, "no executor was caught downloading"
    assert sorted(survived["written"]) == sorted(local), "every row featurized exactly once"
    assert any(" was lost (" in line for line in survived["failures"]), survived["failures"]  # reported, not hidden
    assert any("failed on executor" in line for line in survived["failures"]), survived["failures"]
    same_as_local(survived["features"])
    busy = [h for h in nodes if _blob_names(h)]
    full = server.full_downloads("/models/mnv2.onnx") - 1  # the driver's own, above, aside
    assert busy and 1 <= full <= len(busy), "no node downloads the whole file twice (the killed transfer aside)"
    # the executors needed the driver's forwarded ZOO_ALLOW_HTTP for this plain-http source, and say what they did
    assert any("downloaded from http://127.0.0.1:" in n and "/models/mnv2.onnx" in n for n in survived["nodes"])
    for home in nodes:  # every published blob is whole and verified
        for blob in home.glob("blobs/sha256/*"):
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
        # the killed download's slot stays for a Range resume (`zoo cache prune` removes it), with its owner
        for part in home.glob("tmp/*.part"):
            assert part.with_suffix(".json").exists(), part

    # (c) warm node caches: a node that holds the model downloads nothing (one that the killed
    # executor's tasks never reached fetches it once); the same application schedules GPUs (README's
    # settings): each task uses the GPU Spark assigned to it, and featurizes on the CPU this machine has
    held = {h: _blob_files(h) for h in nodes}
    before = downloads()
    warm = run("warm+gpu")
    same_as_local(warm["features"])
    for home, files in held.items():
        assert files == {} or _blob_files(home) == files, "a warm node keeps its files as they were"
    newly = [h for h, files in held.items() if not files and _blob_names(h)]
    assert downloads() - before == len(newly), "only a node without the model downloads it"
    scheduled = warm["gpu"]
    assert len(scheduled) == 4
    assert all(assigned == [str(chosen)] for assigned, chosen in scheduled), scheduled
    assert {chosen for _, chosen in scheduled} <= {3, 5}
    _cold(nodes)  # the next test, and the fixture's final check, see nodes without the killed download's slot


def _app_dirs(running) -> set:
    return set(running.folder.glob("worker*-work/app-*"))


@pytest.mark.timeout(900)  # a hang guard: four applications and an environment build, 114-149 s alone, 226 in the suite
def test_readme_cluster_walkthrough(cluster, spark, zoo_env, mobilenet_bytes, photos, tmp_path):
    """README "Running on a cluster", line by line, with this machine's host, port and folders."""
    running, nodes = cluster
    _cold(nodes)
    exports, _, _ = readme_cluster_commands()
    port = running.url.rsplit(":", 1)[1]
    shared, work = tmp_path / "shared", tmp_path / "work"
    shared.mkdir()
    work.mkdir()
    shutil.copytree(photos, shared / "photos")
    (work / "net.onnx").write_bytes(mobilenet_bytes)
    env = {**os.environ, "PATH": bin_path(), "ZOO_RETRIES": "0"}

    def line(command: str, **extra) -> subprocess.CompletedProcess:
        command = (command.replace("/opt/sparkzoo/bin/python", sys.executable).replace("/shared/", f"{shared}/")
                   .replace("examples/cluster/submit.sh", str(REPO / "examples" / "cluster" / "submit.sh")))
        prelude = [e.replace(README_HEAD, "127.0.0.1") for e in exports]
        script = "; ".join([*prelude, command.replace("spark://$HEAD:7077", f"spark://$HEAD:{port}")])
        return subprocess.run(["bash", "-c", script], cwd=work, env={**env, **extra}, capture_output=True, text=True,
                              timeout=400)

    add, featurize, build_env, submit = readme_block("zoo cluster-env")
    assert add.startswith("zoo add net.onnx") and "zoo featurize" in featurize and "submit.sh" in submit

    # a model only the driver has: registered, then its file deleted (absent on every node, and here)
    assert line(add).returncode == 0
    (work / "net.onnx").unlink()
    local_df = zoo.read_images(spark, str(photos))
    local = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in
             zoo.pipeline("mynet", cut=1, outputFormat="array").fit(local_df).transform(local_df).collect()}
    cut_sha = zoo.cut("mynet", 1).name

    def same_as_local(parquet) -> None:
        rows = spark.read.parquet(str(parquet)).collect()
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == sorted(local)
        for r in rows:
            assert r["error"] is None
            np.testing.assert_allclose(r["features"].toArray(), local[r["path"].rsplit("/", 1)[-1]], rtol=1e-6, atol=1e-6)

    done = line(featurize)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 files found" in done.stdout and "12 featurized, 0 failed" in done.stdout, done.stdout
    same_as_local(shared / "features.parquet")
    busy = [h for h in nodes if _blob_names(h)]
    assert busy and all(_blob_names(h) == [cut_sha] for h in busy), "each node cache holds the shipped cut, once"
    assert done.stderr.count("mynet: shipped by the driver") == len(busy), done.stderr

    # the environment archive, and submit.sh in client mode with it: executors run ./env/bin/python
    built = line(build_env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (work / "env.tar.gz").stat().st_size > 10 << 20 and "MiB packed" in built.stdout
    every_node_had_it = len(busy) == len(nodes)
    before = _app_dirs(running)
    submitted = line(submit, DRIVER_PYTHON=sys.executable)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "12 images -> " in submitted.stdout, submitted.stdout
    same_as_local(shared / "features2.parquet")
    apps = _app_dirs(running) - before
    assert len({d.name for d in apps}) == 1, apps  # one application, a folder on each worker it used
    executors = [d for app in apps for d in app.iterdir() if d.is_dir()]
    assert executors and all((d / "env" / "bin" / "python").exists() for d in executors), "executors used the archive"
    shipped_again = any((d / cut_sha).exists() for d in executors)
    assert shipped_again is not every_node_had_it, "ship only to an application whose nodes lack the model"
    assert all(_blob_names(h) == [cut_sha] for h in nodes if _blob_names(h))

    # the failures a user sees: no route to the model (a wrong mirror, the source file gone) ...
    wrong = featurize.replace("--model mynet", "--model mynet --cut 2 --no-ship-model --conf spark.task.maxFailures=1"
                              ).replace("features.parquet", "features-wrong.parquet")
    failed = line(wrong, ZOO_MIRRORS="http://127.0.0.1:9/zoo")
    assert failed.returncode == 6, failed.stderr[-3000:]
    error = [ln for ln in failed.stderr.splitlines() if ln.startswith("zoo: error:")]
    assert len(error) == 1 and "Traceback" not in failed.stderr, failed.stderr
    for part in ("on executor host", "ZOO_HOME=", "ZOO_MIRRORS='http://127.0.0.1:9/zoo' (forwarded from the driver)",
                 "http://127.0.0.1:9/zoo/sha256/", "--ship-model", "spark.executorEnv.ZOO_MIRRORS"):
        assert part in error[0], (part, error[0])
    assert any("failed on executor" in ln for ln in failed.stderr.splitlines() if ln.startswith("zoo: WARNING:"))
    noise = [ln for ln in failed.stderr.splitlines() if not ln.startswith(("zoo: ", "WARNING: Using incubator modules"))]
    assert noise == [], failed.stderr  # the JVM's own one-line notice aside, only sparkzoo speaks

    # ... and executors whose Python lacks sparkzoo
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = featurize.replace("PYSPARK_PYTHON=/opt/sparkzoo/bin/python ", "").replace(
        "--model mynet", f"--model mynet --conf spark.pyspark.python={tmp_path / 'bare' / 'bin' / 'python'} "
                         "--conf spark.task.maxFailures=1").replace("features.parquet", "features3.parquet")
    failed = line(bare)
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert "zoo: error: the executors' Python" in failed.stderr and "zoo cluster-env" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr


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
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    blob.chmod(before.st_mode)
    # a silent fault (bits rotting on the medium change no inode time): the cache's stat record of the
    # blob is made to match, as if the fault happened after it was recorded
    index_path = nodes[1] / "index.json"
    index = json.loads(index_path.read_text())
    now = blob.stat()
    index["blobs"][sha].update(size=now.st_size, mtime_ns=now.st_mtime_ns, ctime_ns=now.st_ctime_ns, ino=now.st_ino)
    index_path.write_text(json.dumps(index))
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
