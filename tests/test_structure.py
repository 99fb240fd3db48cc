"""The seams the restructuring drew (issue 16), checked by behaviour: one model-reference parser,
generated Param accessors, renamed stages and moved classes that old code and old saved pipelines
still reach, and cache paths built only from real sha256s whatever a planted file says."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.param.shared import HasInputCol

import zoo
from zoo.errors import CacheError, ModelNotFoundError
from zoo.hub import refs
from zoo.hub.cache import ModelCache
from zoo.stages.base import ZooTransformer
from zoo.stages.params import param

SHA = "ab" * 32


@pytest.mark.parametrize("text, kind, value", [
    (SHA, "sha256", SHA),
    (f"sha256:{SHA}", "sha256", SHA),
    ("resnet50", "name", "resnet50"),
    ("resnet50-v1.7", "name", "resnet50-v1.7"),
    ("model.onnx", "path", "model.onnx"),
    ("models/resnet", "path", "models/resnet"),
    ("file:///srv/models/r50.onnx", "path", "/srv/models/r50.onnx"),
    ("~/m.onnx", "path", os.path.expanduser("~/m.onnx")),
    (SHA.upper(), "name", SHA.upper()),  # not a sha256 (upper case): a name, which no registry accepts
])
def test_one_parser_reads_every_kind_of_model_reference(text, kind, value):
    ref = refs.parse(text)
    assert (ref.kind, ref.value, str(ref)) == (kind, value, text)


def test_a_path_object_is_a_path_reference(tmp_path):
    ref = refs.parse(tmp_path / "m.onnx")
    assert ref.kind == "path" and ref.path == tmp_path / "m.onnx"


class _Blur(ZooTransformer, HasInputCol):
    zoo_name = "blur_for_test"
    ksize = param("kernel size in pixels (odd)", int)
    names = param("names", list[str])

    def getNames(self) -> list[str]:  # a hand-written accessor wins over the generated one
        return ["custom"]


def test_accessors_are_generated_typed_and_documented():
    blur = _Blur()
    assert blur.setKsize(5.0) is blur and blur.getKsize() == 5 and isinstance(blur.getKsize(), int)
    with pytest.raises(TypeError):
        blur.setKsize("five")
    assert blur.setInputCol("image").getInputCol() == "image"
    assert blur.setNames(["a"]).getNames() == ["custom"]
    assert "kernel size" in _Blur.setKsize.__doc__ and _Blur.ksize.name == "ksize"
    with pytest.raises(TypeError, match="no converter"):
        param("a set", set)


def test_the_former_stage_name_still_builds_the_stage_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'featurize' is now called 'tabular_featurizer'"):
        old = zoo.stage("featurize", excludeCols=["y"])
    assert type(old).__name__ == "TabularFeaturizer" and old.getExcludeCols() == ["y"]


def test_a_pipeline_saved_under_the_0_2_class_paths_loads(spark, tmp_path):
    df = spark.createDataFrame([(1.0, "a"), (2.0, "b"), (None, "a")], "x double, c string")
    fitted = Pipeline(stages=[zoo.stage("tabular_featurizer")]).fit(df)
    fitted.write().save(str(tmp_path / "p"))
    rewritten = 0
    for meta in (tmp_path / "p").rglob("metadata/part-*"):
        text = meta.read_text()
        if "zoo.stages.tabular_featurizer.TabularFeaturizerModel" in text:
            meta.write_text(text.replace("zoo.stages.tabular_featurizer.TabularFeaturizerModel",
                                         "zoo.stages.auto_featurizer.FeaturizeModel"))
            meta.with_name(f".{meta.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old text
            rewritten += 1
    assert rewritten == 1, "the saved stage's metadata names its class once"
    loaded = PipelineModel.load(str(tmp_path / "p"))
    assert loaded.transform(df).collect() == fitted.transform(df).collect()


def test_a_planted_index_name_cannot_lead_a_removal_out_of_the_cache(zoo_env, tmp_path):
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(b"not yours")
    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    escape = os.path.relpath(victim, cache.blobs_dir)
    cache.index_path.write_text(json.dumps({"version": 1, "names": {"evil": escape}, "blobs": {escape: {}}}))
    assert "evil" not in cache.names()
    with pytest.raises(ModelNotFoundError):
        zoo.remove("evil")
    with pytest.raises(CacheError, match="not a sha256"):
        cache.blob_path(escape)
    with pytest.raises(CacheError, match="not a sha256"):
        cache.optimized_path("../" + SHA)
    assert victim.read_bytes() == b"not yours"


def test_a_planted_cut_record_pointing_outside_is_ignored(zoo_env, tmp_path, mobilenet_bytes):
    from zoo.hub import derived, layer_cuts

    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    sha, path = cache.import_bytes(mobilenet_bytes)
    first, first_sha, _ = layer_cuts.cut_model(cache, sha, path, None, 1, "mnv2")
    record_path = derived.record_path(cache, layer_cuts.cut_derivation(sha, first).key)
    record = json.loads(record_path.read_text())
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"planted")
    record["output"]["sha256"] = os.path.relpath(outside, cache.blobs_dir)
    record_path.write_text(json.dumps(record))
    chosen, cut_sha, runnable = layer_cuts.cut_model(cache, sha, path, None, 1, "mnv2")
    assert chosen == first and cut_sha == first_sha and Path(runnable) == cache.blob_path(cut_sha)
    assert outside.read_bytes() == b"planted"
    assert json.loads(record_path.read_text())["output"]["sha256"] == cut_sha, "the record is rewritten"
