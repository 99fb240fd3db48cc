"""The built-in stages under Spark Connect: a real local Connect server, in its own process.

`SparkSession.builder.remote("local[2]")` starts a Spark Connect server from the installed pyspark;
a subprocess keeps it apart from the suite's classic session. One subprocess (one server start)
runs both scripts below and each test reads its part of the result; one pytest-xdist worker runs
this module (conftest.ONE_WORKER_MODULES).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, sys
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession
from pyspark.ml import Pipeline
import zoo
from zoo.testing import check_stage

spark = SparkSession.builder.remote("local[2]").getOrCreate()
import logging; logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
out = {"session": type(spark).__module__}
df = spark.createDataFrame([(1, 2.0, [1.0, 2.0]), (2, None, [3.0, 4.0])], "id long, x double, arr array<double>")
pipeline = Pipeline(stages=[
    zoo.stage("sql", statement="SELECT id, coalesce(x, 0.0) AS x, arr FROM __THIS__"),
    zoo.stage("vector_assembler", inputCols=["x", "arr"], outputCol="f"),
    zoo.stage("repartition", numPartitions=2), zoo.stage("cache"), zoo.stage("rename", mapping={"f": "features"}),
    zoo.stage("drop", cols=["arr"]), zoo.stage("select", cols=["id", "features"]),
])
out["rows"] = sorted([r.id, r.features.toArray().tolist()] for r in pipeline.fit(df).transform(df).collect())
try:
    zoo.stage("select", cols=["nope"]).transform(df)
except zoo.errors.SchemaError as exc:
    out["error"] = str(exc)
out["kit"] = {name: [str(f) for f in check_stage(name, spark, checks=["schema", "partitioning", "bad_input"])]
              for name in ("sql", "vector_assembler", "rename")}
"""


@pytest.fixture(scope="module")
def under_connect(tmp_path_factory) -> dict:
    """What both scripts saw under Spark Connect, run in one subprocess on six tiny JPEGs."""
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (in the test extras)")
    from zoo.testing import tiny

    tmp = tmp_path_factory.mktemp("connect")
    folder = tmp / "images"
    folder.mkdir()
    for k in range(6):
        (folder / f"{k}.jpg").write_bytes(tiny.jpeg(16 + k, 20, seed=k))
    result = subprocess.run([sys.executable, "-c", SCRIPT + FEATURIZE, str(folder)], capture_output=True, text=True,
                            timeout=400, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["session"] == "pyspark.sql.connect.session"
    return {**out, "folder": str(folder)}


@pytest.mark.slow
def test_stages_run_under_spark_connect(under_connect):
    out = under_connect
    assert out["rows"] == [[1, [2.0, 1.0, 2.0]], [2, [0.0, 3.0, 4.0]]]
    assert "input column 'nope' is missing" in out["error"]
    assert out["kit"] == {"sql": [], "vector_assembler": [], "rename": []}


FEATURIZE = r"""
from pyspark.ml import PipelineModel
from zoo.testing import tiny

folder = sys.argv[1]
df = zoo.read_images(spark, folder)
model = zoo.pipeline(tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array").fit(df)
features = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in model.transform(df).select("path", "features").collect()}
path = os.path.join(folder, "..", "model")
model.write().overwrite().save(path)
model.write().overwrite().save(path)  # overwriting an existing save works under Connect too
reloaded = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in
            PipelineModel.load(path).transform(df).select("path", "features").collect()}
out.update(features=features, reloaded=reloaded)
spark.stop()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_featurizer_pipeline_transforms_saves_and_loads_under_spark_connect(under_connect, spark):
    import numpy as np

    import zoo
    from zoo.testing import tiny

    out, folder = under_connect, under_connect["folder"]
    df = zoo.read_images(spark, str(folder))  # the same pipeline in classic mode, for reference
    classic = {r["path"].rsplit("/", 1)[-1]: r["features"] for r in
               zoo.pipeline(tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS),
                            outputFormat="array").fit(df).transform(df).collect()}
    assert sorted(out["features"]) == sorted(classic) == [f"{k}.jpg" for k in range(6)]
    for name, values in classic.items():
        np.testing.assert_allclose(out["features"][name], values, rtol=1e-6)
        np.testing.assert_allclose(out["reloaded"][name], values, rtol=1e-6)
