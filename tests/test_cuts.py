"""Layer cuts against the truth: a cut model's output equals the full model's intermediate tensor."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import zoo
from zoo.hub import layer_cuts
from zoo.errors import CutError

from _models import resnet_like
from conftest import entry


def _intermediate(model_bytes: bytes, tensor: str, feed: dict) -> np.ndarray:
    """Run the full model with ``tensor`` added as an output (the reference for a cut)."""
    model = onnx.load_from_string(model_bytes)
    model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([tensor], feed)[0]


def _dequantize(model_bytes: bytes, tensor: str, values: np.ndarray) -> np.ndarray:
    graph = layer_cuts._Graph(onnx.load_from_string(model_bytes))
    scale_name, zero_name = graph.qparams(tensor)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.model.graph.initializer}
    return (values.astype(np.float32) - inits[zero_name].astype(np.float32)) * inits[scale_name]


@pytest.fixture
def resnet_file(tmp_path):
    path = tmp_path / "resnet_like.onnx"
    path.write_bytes(resnet_like())
    return path


def test_resnet_like_cuts_follow_the_documented_definition(resnet_file):
    cuts = zoo.cuts(str(resnet_file))
    assert [(c.index, c.tensor, c.op) for c in cuts] == [
        (0, "logits", ""), (1, "flat", "Gemm"), (2, "block_relu", "GlobalAveragePool"), (3, "block", "Relu"),
    ]  # the walk stops at the residual Add (two data inputs)
    assert cuts[1].shape == (None, 8) and cuts[1].feature_length == 8
    assert cuts[2].shape == (None, 8, 16, 16) and cuts[2].dtype == "float32"


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_float_cut_equals_the_full_models_intermediate_tensor(zoo_env, resnet_file, cut):
    chosen = layer_cuts.select(zoo.cuts(str(resnet_file)), cut, "resnet_like")
    path = zoo.cut(str(resnet_file), cut)
    x = np.random.default_rng(cut).normal(size=(3, 3, 32, 32)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    want = _intermediate(resnet_file.read_bytes(), chosen.tensor, {"data": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    cut_model = onnx.load(str(path))
    onnx.checker.check_model(cut_model)
    assert cut_model.ir_version == 8  # the source's IR version, which onnxruntime accepts
    assert {n.op_type for n in cut_model.graph.node}.isdisjoint({"Gemm"})  # the head is really gone
    props = {p.key: p.value for p in cut_model.metadata_props}
    assert props["zoo.cut"] == str(cut) and props["zoo.cut_tensor"] == chosen.tensor


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_quantized_mobilenet_cut_is_dequantized_and_equals_the_intermediate(served_mobilenet, mobilenet_bytes, cut):
    chosen = layer_cuts.select(zoo.cuts("mnv2"), cut, "mnv2")
    assert chosen.quantized and chosen.dtype == "float32"
    path = zoo.cut("mnv2", cut)
    x = np.random.default_rng(0).uniform(-2, 2, size=(2, 3, 224, 224)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].type == "tensor(float)"
    got = sess.run(None, {"input": x})[0]
    raw = _intermediate(mobilenet_bytes, chosen.tensor, {"input": x})
    assert raw.dtype == np.uint8
    np.testing.assert_allclose(got, _dequantize(mobilenet_bytes, chosen.tensor, raw), rtol=1e-6, atol=1e-6)
    assert got.reshape(2, -1).shape[1] == chosen.feature_length


def test_mobilenet_cut1_is_the_1280_wide_pool_output(served_mobilenet):
    cuts = zoo.cuts("mnv2")
    assert (cuts[1].tensor, cuts[1].op, cuts[1].feature_length) == ("472_quantized", "QLinearMatMul", 1280)
    assert cuts[2].op == "QLinearGlobalAveragePool" and cuts[2].shape == (None, 1280, 7, 7)


def test_cut_model_is_cached_as_a_blob_keyed_by_source_and_cut(zoo_env, resnet_file):
    first = zoo.cut(str(resnet_file), 1)
    assert first.parent == zoo_env / "blobs" / "sha256"
    mtime = first.stat().st_mtime_ns
    assert zoo.cut(str(resnet_file), "flat") == first  # by tensor name: the same blob, not rebuilt
    assert first.stat().st_mtime_ns == mtime
    records = [json.loads(p.read_text()) for p in (zoo_env / "derived").glob("*.json")]
    assert sorted(r["kind"] for r in records) == ["cut", "cuts"]  # the layer table and the one cut model
    (made,) = [r for r in records if r["kind"] == "cut"]
    assert made["inputs"]["cut"]["tensor"] == "flat" and made["output"]["sha256"] == first.name


def test_registry_pinned_cuts_win_over_the_analysis(zoo_env, write_registry, resnet_file, tmp_path):
    data = resnet_file.read_bytes()
    write_registry(entry("pinned", data, [resnet_file.as_uri()], cuts=["block_relu", "c1_relu"]))
    cuts = zoo.cuts("pinned")
    assert [c.tensor for c in cuts] == ["logits", "block_relu", "c1_relu"]
    x = np.ones((1, 3, 32, 32), np.float32)
    got = ort.InferenceSession(str(zoo.cut("pinned", 2)), providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    np.testing.assert_allclose(got, _intermediate(data, "c1_relu", {"data": x}), rtol=1e-5, atol=1e-6)


def test_bad_cuts_name_the_model_and_list_what_exists(zoo_env, resnet_file, write_registry):
    with pytest.raises(CutError, match=r"no cut 9; available cuts: 0=logits, 1=flat, 2=block_relu, 3=block"):
        zoo.cut(str(resnet_file), 9)
    with pytest.raises(CutError, match="no cut 'nope'"):
        zoo.cut(str(resnet_file), "nope")
    write_registry(entry("badpin", resnet_file.read_bytes(), [resnet_file.as_uri()], cuts=["missing_tensor"]))
    with pytest.raises(CutError, match="pins cut tensor 'missing_tensor'"):
        zoo.cuts("badpin")


def test_zoo_info_lists_cuts_once_cached(served_mobilenet, capsys):
    from zoo.cli.main import main

    assert main(["info", "mnv2"]) == 0
    assert "zoo pull mnv2" in capsys.readouterr().out  # not cached yet: says how to get the list
    zoo.pull("mnv2")
    assert main(["info", "mnv2", "--json"]) == 0
    cuts = json.loads(capsys.readouterr().out)["available_cuts"]
    assert cuts[1]["tensor"] == "472_quantized" and cuts[1]["feature_length"] == 1280 and cuts[1]["quantized"]
    assert main(["info", "mnv2"]) == 0
    assert "QLinearGlobalAveragePool" in capsys.readouterr().out
