"""The stage registry, `zoo.stage`, `zoo stages`, and what each built-in stage does."""

from __future__ import annotations

import json

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler as SparkVectorAssembler
from pyspark.ml.functions import array_to_vector

import zoo
from test_cli import zoo_cmd
from zoo.errors import SchemaError, StageError

BUILTIN = {"sql", "repartition", "cache", "select", "drop", "rename", "vector_assembler", "image_featurizer",
           "onnx_model", "image_transformer", "image_augmenter", "group_average", "text_featurizer", "tabular_featurizer",
           "text_embedder", "image_classifier", "object_detector", "detection_crops"}


def test_builtins_are_registered_through_the_entry_point():
    found = {s.name: s for s in zoo.stages()}
    assert BUILTIN <= set(found)
    for name in BUILTIN:
        assert found[name].plugin == "builtin" and found[name].distribution == "sparkzoo"
        assert found[name].class_path.startswith("zoo.stages.")
        assert found[name].doc and all(p["doc"] for p in found[name].params)


def test_zoo_stage_builds_by_name_and_explains_mistakes():
    stage = zoo.stage("sql", statement="SELECT 1 AS one FROM __THIS__")
    assert stage.getStatement() == "SELECT 1 AS one FROM __THIS__"
    with pytest.raises(StageError, match="unknown stage 'sqll'.*Did you mean 'sql'"):
        zoo.stage("sqll")
    with pytest.raises(StageError, match="stage 'select'.*Its params: cols"):
        zoo.stage("select", columns=["a"])


def test_a_broken_plugin_is_skipped_and_reported(caplog):
    from zoo.plugins.manager import manager

    class Broken:
        @zoo.hookimpl
        def zoo_register_stages(self):
            raise RuntimeError("boom")

    plugin = Broken()
    manager().register(plugin, name="broken-test-plugin")
    try:
        with caplog.at_level("WARNING", logger="zoo"):
            names = {s.name for s in zoo.stages()}
        assert BUILTIN <= names
        assert "broken-test-plugin" in caplog.text and "RuntimeError: boom" in caplog.text
    finally:
        manager().unregister(plugin)


def test_zoo_stages_cli_lists_name_class_plugin_params():
    listing = {s["name"]: s for s in json.loads(zoo_cmd("stages", "--json").stdout)}
    assert listing["vector_assembler"]["cls"] == "zoo.stages.vector_assembler.VectorAssembler"
    assert listing["vector_assembler"]["distribution"] == "sparkzoo"
    params = {p["name"]: p for p in listing["vector_assembler"]["params"]}
    assert params["handleInvalid"] == {**params["handleInvalid"], "type": "str", "default": "error"}
    assert "sql" in zoo_cmd("stages").stdout


def test_sql_errors_name_the_stage_and_statement(spark):
    with pytest.raises(StageError, match="must read from __THIS__"):
        zoo.stage("sql", statement="SELECT 1")
    stage = zoo.stage("sql", statement="SELECT nope FROM __THIS__")
    df = spark.createDataFrame([(1,)], "a long")
    with pytest.raises(SchemaError, match=r"stage sql \(SQL_\w+\): statement 'SELECT nope FROM __THIS__' fails"):
        stage.transform(df)
    with pytest.raises(SchemaError, match="statement 'SELECT nope FROM __THIS__' fails"):
        stage.transformSchema(df.schema)


def test_vector_assembler_values_and_invalid_handling(spark):
    df = spark.createDataFrame(
        [(1, 2.0, True, [0.5, 1.5]), (2, None, False, [1.0, None]), (3, float("nan"), None, [3.0, 4.0])],
        "id long, x double, flag boolean, arr array<double>",
    )
    va = zoo.stage("vector_assembler", inputCols=["x", "flag", "arr"], outputCol="v", handleInvalid="skip")
    assert [r.v.toArray().tolist() for r in va.transform(df).orderBy("id").collect()] == [[2.0, 1.0, 0.5, 1.5]]
    keep = va.copy().setHandleInvalid("keep").transform(df).orderBy("id").collect()
    assert [str(r.v) for r in keep] == ["[2.0,1.0,0.5,1.5]", "[nan,0.0,1.0,nan]", "[nan,nan,3.0,4.0]"]
    with pytest.raises(Exception, match=r"null or NaN values in column\(s\) x, arr with handleInvalid='error'"):
        va.copy().setHandleInvalid("error").transform(df.where("id = 2")).collect()
    with pytest.raises(SchemaError, match="input column 'id2' is missing"):
        va.copy().setInputCols(["id2"]).transform(df)
    with pytest.raises(SchemaError, match="output column 'x' already exists"):
        va.copy().setOutputCol("x").transform(df)
    bad = spark.createDataFrame([("a",)], "s string")
    with pytest.raises(SchemaError, match="'s' has type string; expected a numeric, boolean, vector or array"):
        zoo.stage("vector_assembler", inputCols=["s"]).transform(bad)


def test_vector_assembler_matches_sparks_on_vectors_and_scalars(spark):
    df = spark.createDataFrame([(i, float(i) / 3, [float(i), -float(i), 0.25]) for i in range(20)], "i long, x double, arr array<double>")
    df = df.withColumn("vec", array_to_vector("arr"))
    ours = zoo.stage("vector_assembler", inputCols=["x", "vec", "i"], outputCol="f").transform(df)
    theirs = SparkVectorAssembler(inputCols=["x", "vec", "i"], outputCol="f").transform(df)
    assert [r.f.toArray().tolist() for r in ours.orderBy("i").collect()] == \
        [r.f.toArray().tolist() for r in theirs.orderBy("i").collect()]


def test_repartition_cache_select_drop_rename(spark):
    df = spark.createDataFrame([(str(i % 3), float(i)) for i in range(12)], "k string, v double")
    assert zoo.stage("repartition", numPartitions=5).transform(df).rdd.getNumPartitions() == 5
    assert zoo.stage("repartition", numPartitions=1, coalesce=True).transform(df).rdd.getNumPartitions() == 1
    with pytest.raises(StageError, match="coalesce needs numPartitions > 0"):
        zoo.stage("repartition", coalesce=True).transform(df)
    cached = zoo.stage("cache", storageLevel="DISK_ONLY").transform(df)
    assert cached.storageLevel.useDisk and not cached.storageLevel.useMemory
    cached.unpersist()
    with pytest.raises(StageError, match="unknown storageLevel 'FAST'"):
        zoo.stage("cache", storageLevel="FAST")
    assert zoo.stage("select", cols=["v"]).transform(df).columns == ["v"]
    assert zoo.stage("drop", cols=["v"]).transform(df).columns == ["k"]
    with pytest.raises(SchemaError, match="input column 'w' is missing; expected a column to drop"):
        zoo.stage("drop", cols=["w"]).transform(df)
    assert zoo.stage("rename", mapping={"v": "value"}).transform(df).columns == ["k", "value"]
    with pytest.raises(SchemaError, match="duplicate columns \\['k'\\]"):
        zoo.stage("rename", mapping={"v": "k"}).transform(df)


def test_a_multi_stage_pipeline_saves_and_loads(spark, tmp_path):
    df = spark.createDataFrame([(1.0, [1.0, 2.0]), (2.0, [3.0, 4.0])], "x double, arr array<double>")
    pipeline = Pipeline(stages=[
        zoo.stage("sql", statement="SELECT x * 10 AS x, arr FROM __THIS__"),
        zoo.stage("vector_assembler", inputCols=["x", "arr"], outputCol="features"),
        zoo.stage("select", cols=["features"]),
    ])
    model = pipeline.fit(df)
    model.write().overwrite().save(str(tmp_path / "m"))
    loaded = PipelineModel.load(str(tmp_path / "m"))
    assert [r.features.toArray().tolist() for r in loaded.transform(df).collect()] == [[10.0, 1.0, 2.0], [20.0, 3.0, 4.0]]
    assert [type(s).__module__ for s in loaded.stages] == ["zoo.stages.sql", "zoo.stages.vector_assembler", "zoo.stages.columns"]


def test_the_example_third_party_plugin_is_installed_and_listed():
    """CI installs examples/zoo-plugin-example (see README's test command); `zoo stages` must show it."""
    listing = {s["name"]: s for s in json.loads(zoo_cmd("stages", "--json").stdout)}
    assert "text_normalize" in listing, "pip install -e examples/zoo-plugin-example"
    assert listing["text_normalize"]["distribution"] == "zoo-plugin-example"
    assert listing["text_normalize"]["plugin"] == "text"
    assert listing["text_normalize"]["cls"] == "zoo_plugin_example.text_normalize.TextNormalize"


def test_plugins_can_be_disabled_by_name_or_all_third_party_ones_at_once():
    disabled = {s["name"] for s in json.loads(zoo_cmd("stages", "--json", env_extra={"ZOO_DISABLE_PLUGINS": "text"}).stdout)}
    assert "text_normalize" not in disabled and BUILTIN <= disabled
    no_auto = {s["name"] for s in json.loads(zoo_cmd("stages", "--json", env_extra={"ZOO_PLUGINS_AUTOLOAD": "0"}).stdout)}
    assert no_auto == BUILTIN


def test_sql_leaves_no_temporary_view_behind(spark):
    before = {t.name for t in spark.catalog.listTables()}
    df = spark.createDataFrame([(1, "a{b}")], "id int, s string")
    out = zoo.stage("sql", statement="SELECT id + 1 AS id, s, '{x}' AS braces FROM __THIS__").transform(df)
    assert [tuple(r) for r in out.collect()] == [(2, "a{b}", "{x}")]  # braces in the statement stay literal
    assert {t.name for t in spark.catalog.listTables()} == before
