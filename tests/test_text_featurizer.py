"""text_featurizer: tokenise, stop words, n-grams, hashing, IDF in one estimator.

Expected values are computed independently: hash buckets with Spark's own HashingTF.indexOf and
IDF weights from the formula log((m + 1) / (df + 1)). The benchmark smoke run checks equality
with the hand-built SparkML pipeline on real documentation text.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import HashingTF

import zoo
from conftest import REPO
from zoo.errors import SchemaError, StageError

DOCS = [(1, "The snow leopard, the ghost of the mountains."), (2, "A snow storm in the mountains"), (3, None),
        (4, "Café Olé: 雪豹 sightings")]


def _df(spark):
    return spark.createDataFrame(DOCS, "id int, text string")


def _vectors(df, col="features"):
    return {r["id"]: r[col] for r in df.select("id", col).collect()}


def _bucket(term: str, n: int = 1 << 18) -> int:
    return HashingTF(numFeatures=n).indexOf(term)


def test_defaults_give_idf_weighted_counts_of_words_without_stop_words(spark):
    model = zoo.stage("text_featurizer").fit(_df(spark))
    out = _vectors(model.transform(_df(spark)))
    m = len(DOCS)
    idf = lambda df: math.log((m + 1) / (df + 1))  # noqa: E731 - Spark's IDF formula
    first = out[1]
    # "the" and "of" are stop words; "snow" and "mountains" are in two documents, the others in one
    expected = {_bucket("snow"): idf(2), _bucket("leopard"): idf(1), _bucket("ghost"): idf(1), _bucket("mountains"): idf(2)}
    assert dict(zip(first.indices.tolist(), first.values.tolist())) == pytest.approx(expected)
    assert first.size == 1 << 18
    assert out[3].numNonzeros() == 0, "a null text is an empty document"
    # unicode words survive whole and lower-cased
    assert set(out[4].indices.tolist()) == {_bucket("café"), _bucket("olé"), _bucket("雪豹"), _bucket("sightings")}
    assert model.idf is not None and len(model.idf) == 1 << 18


def test_every_step_can_be_switched(spark):
    df = _df(spark)
    stage = zoo.stage("text_featurizer", removeStopWords=False, useIDF=False, nGramLengths=[1, 2], numFeatures=1 << 20,
                      toLowercase=False, minTokenLength=2, outputCol="tf")
    out = _vectors(stage.fit(df).transform(df), "tf")[2]
    words = ["snow", "storm", "in", "the", "mountains"]  # "A" is shorter than minTokenLength
    terms = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    counts = {}
    for t in terms:
        counts[_bucket(t, 1 << 20)] = counts.get(_bucket(t, 1 << 20), 0) + 1.0
    assert dict(zip(out.indices.tolist(), out.values.tolist())) == counts
    # presence instead of counts; a custom stop word list replaces the English one ("the" stays)
    binary = zoo.stage("text_featurizer", useIDF=False, binary=True, stopWords=["snow"]).fit(df)
    row = _vectors(binary.transform(df))[1]
    assert dict(zip(row.indices.tolist(), row.values.tolist())) == {
        _bucket(w): 1.0 for w in ["the", "leopard", "ghost", "of", "mountains"]}
    assert binary.idf is None


def test_fitted_model_saves_and_loads_inside_a_pipeline(spark, tmp_path):
    df = _df(spark)
    fitted = Pipeline(stages=[zoo.stage("text_featurizer", nGramLengths=[1, 2], minDocFreq=2)]).fit(df)
    fitted.write().save(str(tmp_path / "p"))
    loaded = PipelineModel.load(str(tmp_path / "p"))
    assert _vectors(loaded.transform(df)) == _vectors(fitted.transform(df))
    assert (tmp_path / "p" / "stages").exists()
    assert loaded.stages[0].getMinDocFreq() == 2 and loaded.stages[0].idf.toArray().tolist() == fitted.stages[0].idf.toArray().tolist()


def test_bad_settings_and_inputs_are_named(spark):
    df = _df(spark)
    with pytest.raises(SchemaError, match="input column 'body' is missing"):
        zoo.stage("text_featurizer", inputCol="body").fit(df)
    with pytest.raises(SchemaError, match="'id' has type int; expected a string column"):
        zoo.stage("text_featurizer", inputCol="id").fit(df)
    with pytest.raises(SchemaError, match="output column 'text' already exists"):
        zoo.stage("text_featurizer", outputCol="text").fit(df)
    with pytest.raises(StageError, match="nGramLengths must hold lengths >= 1, got \\[0\\]"):
        zoo.stage("text_featurizer", nGramLengths=[0]).fit(df)
    with pytest.raises(StageError, match="stopWordsLanguage must be one of .* got 'klingon'"):
        zoo.stage("text_featurizer", stopWordsLanguage="klingon").fit(df)


@pytest.mark.slow
def test_bench_text_smoke_equals_the_hand_built_pipeline(tmp_path):
    out = tmp_path / "text.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_text.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["outputs_equal"] is True and report["rows_compared"] == 2000
    assert report["baseline_s"] > 0 and report["sparkzoo_s"] > 0
