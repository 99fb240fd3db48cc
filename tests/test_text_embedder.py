"""text_embedder: a real (tiny) ONNX text encoder with a BERT-style signature and a real tokenizers
tokenizer (zoo.testing.tiny), compared with ONNX Runtime run text by text without padding."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import zoo
from zoo.testing import tiny
from zoo.errors import StageError

TEXTS = [(1, "A snow leopard on the ridge"), (2, "the camera saw nothing"), (3, None), (4, "Leopard! 雪豹 unknown")]


def _reference(text: str | None, pooling: str) -> np.ndarray:
    from tokenizers import Tokenizer

    enc = Tokenizer.from_str(tiny.tiny_tokenizer_json()).encode(text or "")
    feed = {k: np.array([v], dtype=np.int64) for k, v in
            (("input_ids", enc.ids), ("attention_mask", enc.attention_mask), ("token_type_ids", enc.type_ids))}
    hidden = ort.InferenceSession(tiny.tiny_text_encoder_bytes()).run(None, feed)[0][0]
    return hidden.mean(axis=0) if pooling == "mean" else hidden[0]


def _stage(**params):
    params = {"modelName": tiny.tiny_text_encoder_path(), "tokenizer": tiny.tiny_tokenizer_path(), **params}
    return zoo.stage("text_embedder", **params)


def test_mean_pooled_embeddings_equal_each_text_run_alone(spark):
    df = spark.createDataFrame(TEXTS, "id int, text string")
    out = {r["id"]: r["embedding"].toArray() for r in _stage(batchSize=3).transform(df).collect()}
    assert sorted(out) == [1, 2, 3, 4], "no row may be lost (a null text is the empty text)"
    for i, text in TEXTS:  # padding to the batch's longest text changes nothing
        np.testing.assert_allclose(out[i], _reference(text, "mean"), rtol=1e-6, atol=1e-6)
    assert len(out[1]) == 8


def test_cls_pooling_and_normalisation(spark):
    df = spark.createDataFrame(TEXTS, "id int, text string")
    out = {r["id"]: r["v"].toArray() for r in _stage(pooling="cls", normalize=True, outputCol="v").transform(df).collect()}
    for i, text in TEXTS:
        expected = _reference(text, "cls")
        np.testing.assert_allclose(out[i], expected / np.linalg.norm(expected), rtol=1e-6, atol=1e-6)
        assert np.linalg.norm(out[i]) == pytest.approx(1.0, abs=1e-6)


def test_bad_settings_are_named(spark, tmp_path):
    df = spark.createDataFrame(TEXTS, "id int, text string")
    missing = tmp_path / "nope.json"
    with pytest.raises(StageError, match=f"cannot read tokenizer '{missing}'"):
        _stage(tokenizer=str(missing)).transform(df)
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(StageError, match="is not a tokenizers tokenizer.json"):
        _stage(tokenizer=str(broken)).transform(df)
    with pytest.raises(StageError, match=r"has inputs \['input'\] that a tokenizer does not produce"):
        _stage(modelName=tiny.tiny_model_path()).transform(df)
    with pytest.raises(StageError, match="has no output 'pooled'"):
        _stage(outputTensor="pooled").transform(df)
    with pytest.raises(StageError, match="pooling must be one of mean, cls, none"):
        _stage(pooling="max").transform(df)
    with pytest.raises(StageError, match="pooling='none' needs"):
        _stage(pooling="none").transform(df).collect()


def test_an_embedded_model_and_tokenizer_make_a_saved_text_embedder_self_contained(spark, zoo_env, tmp_path,
                                                                                   monkeypatch):
    import shutil

    from pyspark.ml import PipelineModel

    model, tokenizer = tmp_path / "encoder.onnx", tmp_path / "tokenizer.json"
    shutil.copy(tiny.tiny_text_encoder_path(), model)
    shutil.copy(tiny.tiny_tokenizer_path(), tokenizer)
    df = spark.createDataFrame(TEXTS, "id int, text string")
    stage = _stage(modelName=str(model), tokenizer=str(tokenizer), embedModel=True)
    want = {r["id"]: r["embedding"] for r in stage.transform(df).collect()}
    PipelineModel(stages=[stage]).write().overwrite().save(str(tmp_path / "pm"))
    model.unlink()
    tokenizer.unlink()  # both sources gone, and the cache too
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "fresh-home"))
    loaded = PipelineModel.load(str(tmp_path / "pm")).stages[0]
    assert loaded.getModelName().startswith("sha256:")
    assert loaded.getTokenizer().startswith(str(tmp_path / "fresh-home"))
    assert {r["id"]: r["embedding"] for r in loaded.transform(df).collect()} == want
    # a tampered tokenizer is refused, naming what it is
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = next((tmp_path / "pm" / "stages").iterdir()) / "zoo_model"
    part = next(folder.glob("*.parquet"))
    table = pq.read_table(part)
    files = table.column("files").to_pylist()[0]
    files = [(k, v + b" ") for k, v in files]
    pq.write_table(table.set_column(table.schema.get_field_index("files"), "files",
                                    pa.array([files], table.schema.field("files").type)), part)
    for crc in folder.glob(".*.crc"):
        crc.unlink()
    with pytest.raises(Exception, match="the tokenizer file embedded in .* does not match its recorded sha256"):
        PipelineModel.load(str(tmp_path / "pm"))



def test_a_registry_entry_pins_its_tokenizer_and_the_stage_takes_the_model_name_alone(spark, zoo_env, write_registry,
                                                                                       tmp_path):
    import hashlib
    import shutil

    from conftest import entry
    from zoo.errors import ChecksumError
    from zoo.hub.cache import model_cache

    model, tokenizer = tmp_path / "encoder.onnx", tmp_path / "tokenizer.json"
    shutil.copy(tiny.tiny_text_encoder_path(), model)
    shutil.copy(tiny.tiny_tokenizer_path(), tokenizer)
    token_bytes = tokenizer.read_bytes()
    pinned = {"sha256": hashlib.sha256(token_bytes).hexdigest(), "bytes": len(token_bytes),
              "sources": [tokenizer.as_uri()]}
    def encoder(name: str, files: dict) -> dict:
        made = entry(name, model.read_bytes(), [model.as_uri()], files=files, task="feature-extraction", labels=None)
        del made["input"]  # no image input: read from the model file when needed
        return made

    write_registry(encoder("tiny-encoder", {"tokenizer": pinned}),
                   encoder("tiny-encoder-bad", {"tokenizer": {**pinned, "sha256": "1" * 64}}))
    zoo.pull("tiny-encoder")
    assert model_cache().lookup(pinned["sha256"], len(token_bytes)) is not None, "pulled with the model"
    assert "tokenizer" in zoo.info("tiny-encoder")["files"]
    with pytest.raises(ChecksumError, match="the tokenizer of 'tiny-encoder-bad'"):
        zoo.pull("tiny-encoder-bad")
    assert model_cache().lookup("1" * 64, None) is None
    tokenizer.unlink()  # from here on only the cache has it
    df = spark.createDataFrame(TEXTS, "id int, text string")
    by_name = {r["id"]: r["embedding"] for r in zoo.stage("text_embedder", modelName="tiny-encoder").transform(df).collect()}
    explicit = {r["id"]: r["embedding"] for r in _stage().transform(df).collect()}
    assert by_name == explicit
    with pytest.raises(StageError, match="tokenizer is not set and model .* has no tokenizer file in the registry"):
        zoo.stage("text_embedder", modelName=tiny.tiny_text_encoder_path()).transform(df)
