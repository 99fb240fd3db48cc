"""`zoo.add`: local ONNX files into the user registry and the cache."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import zoo
from conftest import MOBILENET, MOBILENET_SHA
from zoo.errors import InvalidModelError, UnsafePathError


def _tiny_model(path, external_location=None):
    weight = numpy_helper.from_array(np.ones((3,), dtype=np.float32), "w")
    if external_location:
        weight.ClearField("raw_data")
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=external_location)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with open(path, "wb") as fh:
        fh.write(model.SerializeToString())
    return path


def test_add_registers_the_real_model_and_caches_it(zoo_env, mobilenet_bytes):
    added = zoo.add(MOBILENET, name="my-mobilenet", preprocess="imagenet", labels="imagenet", aliases=["mine"])
    assert added.sha256 == MOBILENET_SHA
    assert added.input == {"name": "input", "layout": "NCHW", "shape": ["batch_size", 3, 224, 224], "dtype": "float32"}
    assert added.preprocess["mean"] == [0.485, 0.456, 0.406]
    user = json.loads((zoo_env / "registry.json").read_text())
    assert [m["name"] for m in user["models"]] == ["my-mobilenet"]
    info = zoo.info("mine")
    assert info["cached"] and info["origin"] == str(zoo_env / "registry.json")
    assert zoo.pull("my-mobilenet").read_bytes() == mobilenet_bytes
    zoo.add(MOBILENET, name="my-mobilenet", preprocess="none")  # re-adding replaces
    user = json.loads((zoo_env / "registry.json").read_text())
    assert len(user["models"]) == 1 and user["models"][0]["preprocess"] is None


def test_add_rejects_external_data_that_escapes(zoo_env, tmp_path):
    model = _tiny_model(tmp_path / "evil.onnx", external_location="../../etc/passwd")
    with pytest.raises(UnsafePathError, match="tensor 'w' .*'../../etc/passwd', which points outside"):
        zoo.add(model, name="evil")
    assert not (zoo_env / "registry.json").exists()


def test_add_pins_external_data_beside_the_model_and_refuses_a_missing_file(zoo_env, tmp_path):
    model = _tiny_model(tmp_path / "ext.onnx", external_location="weights.bin")
    with pytest.raises(InvalidModelError, match="external data file 'weights.bin' is missing beside it"):
        zoo.add(model, name="ext")
    assert not (zoo_env / "registry.json").exists()
    (tmp_path / "weights.bin").write_bytes(np.ones(3, np.float32).tobytes())
    added = zoo.add(model, name="ext", preprocess="none")  # tests/test_bundles.py runs such models
    assert list(added.external_data) == ["weights.bin"] and added.external_data["weights.bin"]["bytes"] == 12


def test_add_rejects_non_onnx_files_and_bad_names(zoo_env, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(InvalidModelError, match="junk.onnx is not a readable ONNX model"):
        zoo.add(junk, name="junk")
    good = _tiny_model(tmp_path / "good.onnx")
    with pytest.raises(UnsafePathError):
        zoo.add(good, name="../escape")
    entry = zoo.add(good, name="tiny", preprocess="none")
    assert entry.input["shape"] == ["batch", 3] and onnx.load(str(zoo.pull("tiny"))).graph.name == "tiny"
