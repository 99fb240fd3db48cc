"""Provenance on feature columns (zoo.lineage): written by the model stages, kept by parquet and by
SparkML save/load, read by zoo.provenance; vector_assembler's ML attributes and its refusal to mix
features of different models, cuts or preprocessing."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import OneHotEncoder, StringIndexer
from pyspark.ml.feature import VectorAssembler as SparkVectorAssembler

import zoo
from zoo.errors import StageError
from zoo.runtime import imaging
from zoo.testing import tiny


def _images(spark):
    return spark.createDataFrame(tiny.image_rows(), "path string, content binary")


def _featurizer(cut: int, out: str = "features", **params):
    return zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=cut, outputCol=out,
                     preprocess=json.dumps(tiny.PREPROCESS), **params)


def test_feature_columns_say_how_they_were_made_and_keep_it_through_parquet_and_save_load(spark, zoo_env, tmp_path):
    df = _images(spark)
    stage = _featurizer(1, fastDecode=True)
    made = zoo.provenance(stage.transform(df), "features")
    assert made["stage"] == "image_featurizer" and made["cut"] == 1 and made["fast_decode"] is True
    assert len(made["model_sha256"]) == 64 and made["runnable_sha256"] != made["model_sha256"], "cut: another model"
    assert made["preprocess"] == tiny.PREPROCESS and len(made["preprocess_sha256"]) == 64
    assert made["resampler"] == imaging.RESAMPLER, "the same settings resampled otherwise are other features"
    assert made["width"] == zoo.cuts(tiny.tiny_model_path())[1].feature_length
    assert {"sparkzoo", "onnxruntime", "opencv", "device"} <= set(made)
    assert zoo.provenance(df, "content") == {}

    out = tmp_path / "features.parquet"
    stage.transform(df).drop("content").write.parquet(str(out))
    assert zoo.provenance(spark.read.parquet(str(out)), "features") == made
    footer = pq.read_schema(next(out.glob("*.parquet"))).metadata[b"org.apache.spark.sql.parquet.row.metadata"]
    assert made["runnable_sha256"].encode() in footer, "the parquet footer carries it"

    PipelineModel(stages=[stage]).write().overwrite().save(str(tmp_path / "pm"))
    assert zoo.provenance(PipelineModel.load(str(tmp_path / "pm")).transform(df), "features") == made


def test_every_model_stage_records_its_outputs(spark, zoo_env):
    import numpy as np

    pixels = spark.createDataFrame([(0, np.zeros(3 * 32 * 32).tolist())], "id int, pixels array<float>")
    scored = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                       fetchDict={"p": "probabilities", "l": "logits"}).transform(pixels)
    assert (zoo.provenance(scored, "p")["output"], zoo.provenance(scored, "l")["output"]) == ("probabilities", "logits")
    texts = spark.createDataFrame([(1, "a snow leopard")], "id int, text string")
    embedded = zoo.stage("text_embedder", modelName=tiny.tiny_text_encoder_path(),
                         tokenizer=tiny.tiny_tokenizer_path()).transform(texts)
    assert zoo.provenance(embedded, "embedding")["pooling"] == "mean"
    assert len(zoo.provenance(embedded, "embedding")["tokenizer_sha256"]) == 64
    classified = zoo.stage("image_classifier", modelName=tiny.tiny_model_path(), labels=tiny.tiny_labels_path(),
                           preprocess=json.dumps(tiny.PREPROCESS)).transform(_images(spark))
    assert zoo.provenance(classified, "probability")["stage"] == "image_classifier"
    averaged = zoo.stage("group_average", inputCol="probability", keyCol="path", outputCol="avg").transform(classified)
    assert zoo.provenance(averaged, "avg")["averaged_by"] == "path"


def test_vector_assembler_refuses_features_of_different_cuts_unless_allowed(spark, zoo_env):
    df = _featurizer(2, "deep2").transform(_featurizer(1, "deep1").transform(_images(spark)))
    with pytest.raises(StageError, match=r"columns 'deep1' and 'deep2' were made differently \(cut 1 vs 2.*"
                                         r"allowMixedProvenance=True"):
        zoo.stage("vector_assembler", inputCols=["deep1", "deep2"]).transform(df)
    both = zoo.stage("vector_assembler", inputCols=["deep1", "deep2"], allowMixedProvenance=True).transform(df)
    width = zoo.cuts(tiny.tiny_model_path())
    assert len(both.first()["features"]) == width[1].feature_length + width[2].feature_length
    attrs = both.schema["features"].metadata["ml_attr"]
    assert attrs["num_attrs"] == len(both.first()["features"])
    assert set(both.schema["features"].metadata["sparkzoo"]["inputs"]) == {"deep1", "deep2"}
    same = _featurizer(1, "again").transform(_featurizer(1, "deep1").transform(_images(spark)))
    assert zoo.stage("vector_assembler", inputCols=["deep1", "again"]).transform(same).count() == 5


def test_a_union_of_features_made_differently_is_refused_by_group_average_and_vector_assembler(spark, zoo_env):
    """Spark keeps only the first branch's metadata on a union: the column reads as one model's features although
    half its rows are another's. The stages that average or assemble find the branches in the plan."""
    from pyspark.sql import functions as F

    plain = _featurizer(1).transform(_images(spark))
    other_recipe = json.dumps({**tiny.PREPROCESS, "scale": 1.0})  # same model and cut, other pixels
    other = _featurizer(1).setPreprocess(other_recipe).transform(_images(spark))
    union = plain.union(other).where(F.col("path").isNotNull()).select("path", "features")
    assert zoo.provenance(union, "features") == zoo.provenance(plain, "features"), "what Spark shows: the first only"
    average = zoo.stage("group_average", inputCol="features", keyCol="path", outputCol="avg")
    with pytest.raises(StageError, match=r"the rows of column 'features' come from a union of features made "
                                         r"differently \(preprocess_sha256 .*allowMixedProvenance=True"):
        average.transform(union)
    nested = plain.select("path", "features").union(plain.select("path", "features").union(other.select("path", "features")))
    with pytest.raises(StageError, match="come from a union of features made differently"):
        zoo.stage("vector_assembler", inputCols=["features"], outputCol="assembled").transform(nested)
    assert average.copy({average.allowMixedProvenance: True}).transform(union).count() == 10
    same = plain.union(_featurizer(1).transform(_images(spark)))  # the same recipe twice: comparable
    assert average.transform(same).count() == 10


def test_vector_assembler_writes_the_ml_attributes_spark_writes_so_one_hot_slots_stay_categorical(spark):
    df = spark.createDataFrame([(1.0, True, "fox"), (2.0, False, "ibex"), (3.0, True, "leopard"), (4.0, False, "fox")],
                               "x double, flag boolean, animal string")
    encoded = Pipeline(stages=[StringIndexer(inputCol="animal", outputCol="animal_idx"),
                               OneHotEncoder(inputCol="animal_idx", outputCol="animal_vec")]).fit(df).transform(df)
    cols = ["x", "flag", "animal_vec"]
    ours = zoo.stage("vector_assembler", inputCols=cols, outputCol="features").transform(encoded)
    spark_own = SparkVectorAssembler(inputCols=cols, outputCol="features").transform(encoded)
    assert ours.schema["features"].metadata["ml_attr"] == spark_own.schema["features"].metadata["ml_attr"]
    categorical = spark._jvm.org.apache.spark.ml.util.MetadataUtils.getCategoricalFeatures(
        ours._jdf.schema().apply("features"))
    assert categorical.size() == 2, "the two one-hot slots (binary attributes) are categorical for tree learners"
    assert [r["features"] for r in ours.collect()] == [r["features"] for r in spark_own.collect()]
