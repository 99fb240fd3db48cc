"""README "Running on a cluster", line by line, on a real standalone cluster (two workers, each its
own ZOO_HOME: two "nodes"): a model only the driver has (``zoo add``, source file deleted) shipped
automatically once per node, an environment archive from ``zoo cluster-env`` used by submit.sh,
and the failures a user sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import zoo
from _cluster import README_HEAD, _blob_names, _cold, bin_path, readme_block, readme_cluster_commands
from conftest import REPO


def _app_dirs(running) -> set:
    return set(running.folder.glob("worker*-work/app-*"))


@pytest.mark.timeout(600)  # six Spark applications in a row: 130 s on the reference VM, 264 s on a slow one
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


