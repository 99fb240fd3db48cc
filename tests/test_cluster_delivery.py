"""What crosses between driver and executors, checked without a cluster (tests/test_cluster.py has one):
forwarded settings, the ship decision, executor errors raised again on the driver as the same
class, task-failure reports, the environment archive's pins, and submit.sh's two modes."""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import os
import subprocess
import sys

import pytest

import zoo
from conftest import REPO, zoo_cmd
from zoo import errors
from zoo.cluster import delivery, env_archive, forwarding
from zoo.config import settings

SUBMIT = REPO / "examples" / "cluster" / "submit.sh"


# -- forwarding ---------------------------------------------------------------------------------------
def test_the_driver_forwards_fetch_settings_and_never_node_paths_or_credentials():
    env = {"ZOO_MIRRORS": "https://m.internal/zoo", "ZOO_ALLOW_HTTP": "m.internal", "ZOO_HOME": "/driver/zoo",
           "ZOO_CUDA_DEVICE": "1", "HF_TOKEN": "secret", "ZOO_REGISTRY": "/driver/r.json", "ZOO_TIMEOUT": "9"}
    assert dict(forwarding.forwarded_env(env)) == {"ZOO_MIRRORS": "https://m.internal/zoo", "ZOO_ALLOW_HTTP": "m.internal",
                                                   "ZOO_TIMEOUT": "9"}
    assert forwarding.forwarded_env({**env, "ZOO_FORWARD": "0"}) == ()
    assert forwarding.forwarded_env({**env, "ZOO_FORWARD": "ZOO_TIMEOUT"}) == (("ZOO_TIMEOUT", "9"),)
    with pytest.raises(errors.ConfigError, match="ZOO_HOME"):
        forwarding.forwarded_env({**env, "ZOO_FORWARD": "ZOO_MIRRORS,ZOO_HOME"})


def test_a_node_keeps_its_own_settings_and_the_driver_fills_the_gaps():
    forwarded = (("ZOO_MIRRORS", "https://far/zoo"), ("ZOO_TIMEOUT", "9"))
    node = {"ZOO_MIRRORS": "https://near/zoo", "ZOO_HOME": "/node/zoo"}
    merged = settings(forwarding.executor_env(forwarded, node))
    assert merged.mirrors == ("https://near/zoo",) and merged.timeout == 9.0 and str(merged.home) == "/node/zoo"
    assert "this node's environment" in forwarding.origin_of("ZOO_MIRRORS", forwarded, node)
    assert "forwarded from the driver" in forwarding.origin_of("ZOO_TIMEOUT", forwarded, node)
    assert forwarding.origin_of("ZOO_OFFLINE", forwarded, node) == "ZOO_OFFLINE is not set"


# -- the ship decision --------------------------------------------------------------------------------
def test_ship_mode_accepts_the_three_modes_and_old_booleans():
    assert [delivery.to_ship_mode(v) for v in ("auto", "ALWAYS", "never", True, False, "true")] == \
        ["auto", "always", "never", "always", "never", "always"]
    with pytest.raises(TypeError, match="auto, always or never"):
        delivery.to_ship_mode("sometimes")
    stage = zoo.stage("image_featurizer", modelName="x")
    assert stage.getShipModel() == "auto"
    assert stage.setShipModel(True).getShipModel() == "always"


def test_only_network_routes_count_as_reachable_from_executors(tmp_path, zoo_env, monkeypatch):
    from zoo.testing import tiny
    from zoo.runtime.models import prepare as resolve

    model = tmp_path / "m.onnx"
    model.write_bytes(open(tiny.tiny_model_path(), "rb").read())
    spec, _ = resolve(str(model), 0)
    assert spec.sources == (model.resolve().as_uri(),)
    assert not delivery.reachable_from_executors(spec, settings())  # a file on this machine only
    monkeypatch.setenv("ZOO_MIRRORS", "/mnt/local-mirror")
    assert not delivery.reachable_from_executors(spec, settings())  # a folder mirror: local too
    monkeypatch.setenv("ZOO_MIRRORS", "http://mirror.internal/zoo")
    assert delivery.reachable_from_executors(spec, settings())
    https = dataclasses.replace(spec, sources=("hf://org/repo/m.onnx@main",))
    monkeypatch.delenv("ZOO_MIRRORS")
    assert delivery.reachable_from_executors(https, settings())


def test_a_local_master_shares_the_driver_settings_and_ships_nothing(spark, zoo_env):
    from zoo.testing import tiny
    from zoo.runtime.models import prepare as resolve

    spec, runnable = resolve(tiny.tiny_model_path(), 1)
    prepared = delivery.prepare(spark, spec, runnable, "auto")
    assert prepared.settings == settings() and not prepared.shipped and prepared.forwarded == ()


# -- executor errors on the driver --------------------------------------------------------------------
def _fails_with(exc_text: str):
    def body(batches):
        from zoo import errors as zoo_errors

        for batch in batches:
            if exc_text == "module":
                raise ModuleNotFoundError("No module named 'zoo'")
            if exc_text == "other":
                raise ValueError("something else")
            raise zoo_errors.DownloadError(exc_text)
            yield batch

    return body


def test_an_executor_zoo_error_is_raised_on_the_driver_as_the_same_class(spark):
    lines: list[str] = []
    df = spark.range(4).repartition(1)
    with pytest.raises(errors.DownloadError, match="^on executor host h: could not get model m") as caught:
        with zoo.cluster.watch(spark, report=lines.append):
            df.mapInArrow(_fails_with("on executor host h: could not get model m; a: HTTP 404. Fix: ..."),
                          "id long").collect()
    assert caught.value.args[0].endswith("Fix: ...")
    assert caught.value.spark_exception is not None  # Spark's own exception stays available
    assert len(lines) == 1 and "failed on executor driver" in lines[0] and "DownloadError" in lines[0], lines


def test_an_executor_python_without_sparkzoo_is_a_config_error_that_says_how_to_ship_one(spark):
    with pytest.raises(errors.ConfigError, match="cannot import 'zoo'.*zoo cluster-env"):
        with zoo.cluster.watch(spark, report=lambda _: None):
            spark.range(2).mapInArrow(_fails_with("module"), "id long").collect()


def test_other_failures_pass_through_unchanged(spark):
    from pyspark.errors import PythonException

    with pytest.raises(PythonException, match="something else"):
        with zoo.cluster.watch(spark, report=lambda _: None):
            spark.range(2).mapInArrow(_fails_with("other"), "id long").collect()
    assert zoo.cluster.executor_error(ValueError("plain")) is None


def test_zoo_featurize_rejects_a_malformed_conf_before_starting_spark(tmp_path):
    done = zoo_cmd("featurize", str(tmp_path), "--model", "m", "--output", str(tmp_path / "o"), "--conf", "novalue",
                   check=2)
    assert "--conf 'novalue' is not KEY=VALUE" in done.stderr


# -- the environment archive ---------------------------------------------------------------------------
def test_the_archive_pins_the_installed_versions_without_pyspark_or_pandas():
    pins = dict(p.split("==") for p in env_archive.requirements())
    for name in ("onnx", "opencv-python-headless", "pyarrow", "numpy", "pluggy"):
        assert pins[name] == metadata.version(name), name
    assert not {"pyspark", "py4j", "pandas"} & {n.lower() for n in pins}
    cpu = dict(p.split("==") for p in env_archive.requirements(cpu=True))
    if "onnxruntime-gpu" in pins:
        assert "onnxruntime-gpu" not in cpu and cpu["onnxruntime"] == pins["onnxruntime-gpu"]
    more = dict(p.split("==") for p in env_archive.requirements(with_packages=("pandas",), extras=("text",)))
    assert more["pandas"] == metadata.version("pandas") and more["tokenizers"] == metadata.version("tokenizers")


def test_cluster_env_refuses_a_name_spark_would_not_unpack(tmp_path):
    done = zoo_cmd("cluster-env", str(tmp_path / "env.zip"), check=2)
    assert "must end with .tar.gz" in done.stderr


# -- submit.sh ----------------------------------------------------------------------------------------
def _submit(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_")}
    full.update(SUBMIT_DRY_RUN="1", DRIVER_PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SUBMIT), *args], capture_output=True, text=True, env=full, timeout=60)


def test_submit_sh_client_mode_keeps_the_drivers_python_and_the_workers_zoo_home():
    done = _submit("spark://head:7077", "/in", "/out", ENV_ARCHIVE="env.tar.gz")
    assert done.returncode == 0, done.stderr
    cmd = done.stdout
    assert "--deploy-mode client" in cmd and "--archives env.tar.gz#env" in cmd
    assert "spark.pyspark.python=./env/bin/python" in cmd and f"spark.pyspark.driver.python={sys.executable}" in cmd
    assert "ZOO_HOME" not in cmd  # a ZOO_HOME the workers' environment sets is never overridden
    assert "spark.executorEnv.ZOO_HOME=/ssd/zoo" in _submit("spark://head:7077", "/in", "/out",
                                                           ZOO_NODE_HOME="/ssd/zoo").stdout


def test_submit_sh_cluster_mode_gives_the_driver_the_archive_and_the_zoo_settings():
    done = _submit("yarn", "/in", "/out", DEPLOY_MODE="cluster", ENV_ARCHIVE="env.tar.gz",
                   ZOO_MIRRORS="http://m.internal/zoo", ZOO_ALLOW_HTTP="m.internal", ZOO_REGISTRY="http://m.internal/r.json")
    assert done.returncode == 0, done.stderr
    cmd = done.stdout
    assert "--deploy-mode cluster" in cmd and "spark.pyspark.python=./env/bin/python" in cmd
    assert "spark.pyspark.driver.python" not in cmd  # the driver runs on a node: the archive's Python
    for name, value in (("ZOO_MIRRORS", "http://m.internal/zoo"), ("ZOO_ALLOW_HTTP", "m.internal"),
                        ("ZOO_REGISTRY", "http://m.internal/r.json")):
        assert f"spark.yarn.appMasterEnv.{name}={value}" in cmd
    k8s = _submit("k8s://https://api:6443", "/in", "/out", DEPLOY_MODE="cluster", ENV_ARCHIVE="e.tar.gz",
                  ZOO_MIRRORS="http://m/zoo").stdout
    assert "spark.kubernetes.driverEnv.ZOO_MIRRORS=http://m/zoo" in k8s


@pytest.mark.parametrize("master", ["spark://head:7077", "local[2]"])
def test_submit_sh_explains_that_spark_has_no_python_cluster_mode_there(master):
    done = _submit(master, "/in", "/out", DEPLOY_MODE="cluster", ENV_ARCHIVE="env.tar.gz")
    assert done.returncode == 2 and "only on YARN and Kubernetes" in done.stderr


@pytest.mark.slow
def test_watch_reports_a_failed_task_from_a_plain_script_without_logging_set_up(tmp_path):
    """What the docs promise a user's own script: one `zoo: WARNING:` line per failed task, with no
    logging configured by the application (the zoo logger's NullHandler must not swallow it)."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent('''
        from pyspark import TaskContext
        from pyspark.sql import SparkSession
        import zoo

        spark = SparkSession.builder.master("local[1,2]").getOrCreate()  # a failed task is retried once

        def flaky(batches):
            if TaskContext.get().attemptNumber() == 0:
                raise RuntimeError("the first attempt fails")
            yield from batches

        with zoo.cluster.watch(spark):
            print(spark.range(3).mapInArrow(flaky, "id long").count())
        spark.stop()
    '''))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}  # the executors' Python: this environment's
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("3"), done.stderr[-3000:]
    warned = [line for line in done.stderr.splitlines() if line.startswith("zoo: WARNING:")]
    assert len(warned) == 1 and "the first attempt fails" in warned[0], done.stderr[-3000:]
