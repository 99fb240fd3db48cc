"""The built-in stages under Spark Connect: a real local Connect server, in its own process.

`SparkSession.builder.remote("local[2]")` starts a Spark Connect server from the installed pyspark;
a subprocess keeps it apart from the suite's classic session.
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
spark.stop()
print(json.dumps(out))
"""


def test_stages_run_under_spark_connect(tmp_path):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (in the test extras)")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["session"] == "pyspark.sql.connect.session"
    assert out["rows"] == [[1, [2.0, 1.0, 2.0]], [2, [0.0, 3.0, 4.0]]]
    assert "input column 'nope' is missing" in out["error"]
    assert out["kit"] == {"sql": [], "vector_assembler": [], "rename": []}
