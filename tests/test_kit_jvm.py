"""Spark's own JVM-backed stages wrapped as zoo stages (zoo.stages.jvm): they register, list, load and
pass the conformance kit with no false alarm, and the kit still sees a wrapper author's mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zoo.errors import SchemaError, essence
from zoo.testing import check_stage

import spark_feature_stages as wrapped

TESTS = Path(__file__).parent


# the dearer three are slow (12-21 s each): CI's Spark 3.5 run (not slow) still has the other five
HEAVY = {"spark_string_indexer", "spark_vector_assembler", "spark_bucketizer"}


@pytest.mark.parametrize("cls", [pytest.param(c, id=c.zoo_name, marks=[pytest.mark.slow] if c.zoo_name in HEAVY else [])
                                 for c in wrapped.STAGES])
def test_sparks_own_feature_stages_wrapped_as_documented_pass_the_kit(spark, cls):
    assert check_stage(cls, spark, fuzz_examples=4) == []


@pytest.mark.parametrize(
    "cls, check, words",
    [
        (wrapped.ForgetsTheMixin, "meta", "without zoo.stages.jvm.JvmStage"),
        (wrapped.ClaimsToKeepRows, "rows", "3 input rows gave 2 output rows"),
        (wrapped.ThresholdNotAParam, "persistence", "attribute(s) 'lowest' set on the instance are not Params"),
        (wrapped.LocalDay, "environment", "spark.sql.session.timeZone"),
    ],
    ids=lambda v: getattr(v, "zoo_name", None) or (v if isinstance(v, str) and " " not in v else ""),
)
def test_the_kit_sees_a_wrapper_authors_mistakes(spark, cls, check, words):
    failures = check_stage(cls, spark, checks=[check])
    assert [f.check for f in failures] == [check], failures
    assert words in failures[0].message, failures[0].message


def test_a_loaded_wrapper_is_the_wrapper_with_the_jvms_defaults(spark, tmp_path):
    stage = wrapped.OneHot(inputCols=["index"], outputCols=["index_vector"])
    stage.save(str(tmp_path / "one_hot"))
    loaded = wrapped.OneHot.load(str(tmp_path / "one_hot"))
    assert type(loaded) is wrapped.OneHot and loaded.uid == stage.uid
    # PySpark alone gives the loaded object a default derived from a fresh uid ('OneHotEncoder_...')
    assert loaded.getOutputCol() == stage.getOutputCol() == f"{stage.uid}__output"
    assert loaded.getInputCols() == ["index"]


def test_a_bad_input_is_refused_on_the_driver_with_schema_error_naming_the_column(spark):
    df = spark.createDataFrame([(b"\x00",)], "text binary")
    with pytest.raises(SchemaError, match=r"stage spark_tokenizer \(Words_\w+\): .*got binary.*input column 'text'"):
        wrapped.Words(inputCol="text", outputCol="words").transform(df)
    with pytest.raises(SchemaError, match="category"):
        wrapped.CategoryIndexer(inputCol="category", outputCol="i").fit(df)


def test_a_jvm_failure_is_told_by_the_jvm_exception_not_py4js_first_line(spark):
    from pyspark.ml.feature import StringIndexer

    model = StringIndexer(inputCol="c", outputCol="i").fit(spark.createDataFrame([("a",)], "c string"))
    with pytest.raises(Exception) as raised:
        model.transform(spark.createDataFrame([("b",)], "c string")).collect()
    said = essence(raised.value)
    assert said.startswith("org.apache.spark.SparkException") and "Unseen label: b" in said, said


@pytest.mark.slow
def test_a_plugin_of_wrapped_spark_stages_lists_without_spark_and_checks_from_the_cli(tmp_path):
    site = tmp_path / "site"
    (site / "zoo_spark_stages-1.0.dist-info").mkdir(parents=True)
    (site / "zoo_spark_stages.py").write_text(textwrap.dedent("""
        import zoo

        @zoo.hookimpl
        def zoo_register_stages():
            import spark_feature_stages
            return spark_feature_stages.STAGES
    """))
    info = site / "zoo_spark_stages-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-spark-stages\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[zoo]\nspark_stages = zoo_spark_stages\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    zoo = [sys.executable, "-m", "zoo.cli.main"]

    listed = subprocess.run([*zoo, "stages", "--json"], capture_output=True, text=True, env=env, timeout=120)
    stages = {s["name"]: s for s in json.loads(listed.stdout)}
    indexer = stages["spark_string_indexer"]
    assert indexer["broken"] == "" and indexer["distribution"] == "zoo-spark-stages"
    assert {"inputCol", "outputCol", "handleInvalid"} <= {p["name"] for p in indexer["params"]}

    code = "import zoo; zoo.stage('spark_tokenizer', inputCol='t')"
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "StageError: stage 'spark_tokenizer' (Words) is one of Spark's JVM-backed stages" in built.stderr
    assert "start a SparkSession first" in built.stderr

    checked = subprocess.run([*zoo, "check", "spark_tokenizer", "--json"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    results = json.loads(checked.stdout)["stages"]["spark_tokenizer"]
    assert results and all(r["ok"] for r in results) and "pickle" not in {r["check"] for r in results}
