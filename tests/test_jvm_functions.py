"""sparkzoo's JVM functions (zoo/runtime/jvm/sparkzoo-functions.jar): built from the committed source, loaded
into the real test Spark session at run time, equal to Spark's own array_to_vector, and switched off
or refused cleanly."""

from __future__ import annotations

import logging
import math
import shutil
import sys
import zipfile

import pytest

from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

import zoo
from zoo.runtime import jvm_functions
from conftest import REPO, missing

sys.path.insert(0, str(REPO / "scripts"))
import build_jar  # noqa: E402

ROWS = [
    (0, []),
    (1, [1.5, -2.0, 0.0]),
    (2, [float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324]),
    (3, None),
    (4, [float(i) / 7 for i in range(2048)]),
]


def _bits(vector):
    return None if vector is None else [math.copysign(1.0, v) if v == 0 else ("nan" if math.isnan(v) else v)
                                        for v in vector.toArray().tolist()]


def test_jar_is_built_from_the_committed_source():
    with zipfile.ZipFile(jvm_functions.JAR) as jar:
        recorded = jar.read(build_jar.HASH_ENTRY).decode().strip()
        names = set(jar.namelist())
    assert recorded == build_jar.source_hash(jvm_functions.SOURCE), "run: python scripts/build_jar.py"
    assert {"org/sparkzoo/spark/ZooFunctions.class", "org/sparkzoo/spark/ZooFunctions$DenseVector.class"} <= names


def test_build_script_reproduces_the_committed_jar(tmp_path):
    if shutil.which("javac") is None:
        missing("no JDK compiler (javac) on this machine")
    rebuilt = build_jar.build(tmp_path / "rebuilt.jar")
    assert rebuilt.read_bytes() == jvm_functions.JAR.read_bytes()


def test_dense_vector_equals_array_to_vector(spark):
    assert jvm_functions.available(spark), "the jar must load into a local session (ADD JAR at run time)"
    df = spark.createDataFrame(ROWS, "id int, arr array<double>")
    ours = jvm_functions.to_vector(spark, F.col("arr"))
    assert "dense_vector" in str(ours)
    theirs = F.when(F.col("arr").isNotNull(), array_to_vector("arr"))  # Spark's alone fails on null arrays
    rows = df.select("id", ours.alias("ours"), theirs.alias("spark")).orderBy("id").collect()
    assert [_bits(r.ours) for r in rows] == [_bits(r.spark) for r in rows]
    assert rows[3].ours is None and len(rows[4].ours) == 2048
    floats = df.select(jvm_functions.to_vector(spark, F.col("arr").cast("array<float>")).alias("v")).orderBy("id")
    assert [_bits(r.v) for r in floats.collect()][1] == [1.5, -2.0, 1.0]


def test_switched_off_by_setting_uses_sparks_function(spark, monkeypatch):
    df = spark.createDataFrame([(1, 2.0, [0.5, 1.5]), (2, -1.0, [3.0, 4.0])], "id long, x double, arr array<double>")
    va = zoo.stage("vector_assembler", inputCols=["x", "arr"], outputCol="v")
    fast = [r.v.toArray().tolist() for r in va.transform(df).orderBy("id").collect()]
    monkeypatch.setenv("ZOO_JVM_FUNCTIONS", "0")
    assert not jvm_functions.available(spark)
    slow = jvm_functions.to_vector(spark, F.col("arr"))
    assert "array_to_vector" in str(slow)
    nulls = spark.createDataFrame([([1.0],), (None,)], "arr array<double>").select(slow.alias("v")).collect()
    assert [r.v.toArray().tolist() if r.v is not None else None for r in nulls] == [[1.0], None]
    assert [r.v.toArray().tolist() for r in va.transform(df).orderBy("id").collect()] == fast == [[2.0, 0.5, 1.5],
                                                                                                  [-1.0, 3.0, 4.0]]


def test_each_session_probes_and_a_taken_catalog_name_is_left_alone(spark, caplog):
    fresh = spark.newSession()  # own SQL settings, same JVM: the jar already added is found at once
    assert jvm_functions.available(fresh)
    assert fresh.conf.get("spark.sql.catalog.sparkzoo") == jvm_functions.CATALOG_CLASS
    taken = spark.newSession()
    taken.conf.set("spark.sql.catalog.sparkzoo", "com.example.TheirCatalog")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        assert not jvm_functions.available(taken)
    assert "com.example.TheirCatalog" in caplog.text
    assert taken.conf.get("spark.sql.catalog.sparkzoo") == "com.example.TheirCatalog"  # untouched
    df = taken.createDataFrame([(1.0, [2.0])], "x double, arr array<double>")
    out = zoo.stage("vector_assembler", inputCols=["x", "arr"]).transform(df).first()
    assert out.features.toArray().tolist() == [1.0, 2.0]


@pytest.mark.slow
def test_session_started_with_spark_jar_needs_no_add_jar(tmp_path):
    """The README's up-front way: spark.jars=zoo.spark_jar() (own driver process: one SparkContext each)."""
    script = tmp_path / "started_with_jar.py"
    script.write_text(
        "import logging, zoo\n"
        "from pyspark.sql import SparkSession\n"
        "from zoo.runtime import jvm_functions\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(message)s')\n"
        "logging.getLogger('py4j').setLevel(logging.WARNING)\n"
        "spark = (SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false')\n"
        "         .config('spark.jars', str(zoo.spark_jar())).getOrCreate())\n"
        "assert jvm_functions.available(spark)\n"
        "df = spark.createDataFrame([(1.0, [2.0, 3.0])], 'x double, arr array<double>')\n"
        "print('VECTOR', zoo.stage('vector_assembler', inputCols=['x', 'arr']).transform(df).first().features)\n"
        "spark.stop()\n"
    )
    import subprocess

    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VECTOR [1.0,2.0,3.0]" in result.stdout
    assert "sparkzoo JVM functions usable (as started)" in result.stderr
    assert "ADD JAR" not in result.stderr
