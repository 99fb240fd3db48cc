"""onnx_model: any ONNX model on DataFrame columns, checked against ONNX Runtime run directly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from pyspark.ml.linalg import Vectors

import zoo
from zoo.testing import tiny
from zoo.errors import StageError

from _models import resnet_like


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(5).normal(size=(7, 3, 32, 32)).astype(np.float32)


def _direct(model_bytes: bytes, feed: dict, outputs: list[str]) -> list[np.ndarray]:
    import onnx

    model = onnx.load_from_string(model_bytes)
    known = {o.name for o in model.graph.output}
    for name in outputs:
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(outputs, feed)


def test_outputs_intermediate_tensors_softmax_and_argmax_equal_onnx_runtime(spark, zoo_env, pixels):
    df = spark.createDataFrame([(i, p.ravel().tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    stage = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                      fetchDict={"probs": "probabilities", "pooled": "flat", "logits": "logits"},
                      softmaxDict={"logits": "softmax"}, argMaxDict={"probs": "label"}, batchSize=3)
    rows = sorted(stage.transform(df.repartition(3)).collect(), key=lambda r: r["id"])
    probs, flat, logits = _direct(tiny.tiny_model_bytes(), {"input": pixels}, ["probabilities", "flat", "logits"])
    np.testing.assert_allclose([r["probs"] for r in rows], probs, rtol=1e-6)
    np.testing.assert_allclose([r["pooled"] for r in rows], flat, rtol=1e-6)
    np.testing.assert_allclose([r["softmax"] for r in rows], probs, rtol=1e-5)  # softmax(logits) == the model's own
    assert [r["label"] for r in rows] == probs.argmax(1).tolist()
    assert stage.transform(df).schema["label"].dataType.simpleString() == "int"


def test_nested_arrays_vectors_and_float64_are_reshaped_and_cast(spark, zoo_env, pixels):
    model = resnet_like()
    path = zoo_env.parent / "resnet_like.onnx"
    path.write_bytes(model)
    nested = spark.createDataFrame([(i, p.astype(float).tolist()) for i, p in enumerate(pixels)],
                                   "id int, x array<array<array<double>>>")
    vectors = spark.createDataFrame([(i, Vectors.dense(p.ravel().astype(float))) for i, p in enumerate(pixels)], ["id", "x"])
    want = _direct(model, {"data": pixels}, ["logits"])[0]
    for df in (nested, vectors):
        stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"data": "x"}, fetchDict={"y": "logits"})
        rows = sorted(stage.transform(df).collect(), key=lambda r: r["id"])
        np.testing.assert_allclose([r["y"] for r in rows], want, rtol=1e-5, atol=1e-6)


def test_model_bytes_and_cuts(spark, zoo_env, pixels):
    df = spark.createDataFrame([(i, p.ravel().tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    stage = zoo.stage("onnx_model", feedDict={"input": "pixels"}, fetchDict={"f": "flat"}, cut=2)
    stage.setModelBytes(tiny.tiny_model_bytes())
    assert stage.getModelName().startswith("sha256:")
    rows = sorted(stage.transform(df).collect(), key=lambda r: r["id"])
    np.testing.assert_allclose([r["f"] for r in rows], _direct(tiny.tiny_model_bytes(), {"input": pixels}, ["flat"])[0],
                               rtol=1e-6)


def test_bad_configuration_and_rows_are_named(spark, zoo_env):
    df = spark.createDataFrame([(1, [1.0, 2.0])], "id int, pixels array<float>")
    base = dict(modelName=tiny.tiny_model_path(), fetchDict={"p": "probabilities"})
    with pytest.raises(StageError, match="model input 'nope'; the model's inputs are input"):
        zoo.stage("onnx_model", feedDict={"nope": "pixels"}, **base).transform(df)
    with pytest.raises(StageError, match="no tensor 'missing'"):
        zoo.stage("onnx_model", feedDict={"input": "pixels"}, modelName=tiny.tiny_model_path(),
                  fetchDict={"p": "missing"}).transform(df)
    with pytest.raises(Exception, match=r"column 'pixels' \(feeding model input 'input'\): row 0 holds 2 values; the model "
                                        r"input needs 3072"):
        zoo.stage("onnx_model", feedDict={"input": "pixels"}, **base).transform(df).collect()


def test_graph_optimization_is_a_param_every_level_gives_the_same_outputs(spark, zoo_env, pixels):
    import hashlib

    from zoo.runtime import sessions

    df = spark.createDataFrame([(i, p.ravel().tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    outputs = {}
    for level in sessions.OPTIMIZATION_LEVELS:
        stage = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                          fetchDict={"p": "probabilities"}, graphOptimization=level)
        assert stage.getGraphOptimization() == level
        outputs[level] = [r["p"] for r in sorted(stage.transform(df).collect(), key=lambda r: r["id"])]
    for level, rows in outputs.items():
        np.testing.assert_allclose(rows, outputs["all"], rtol=1e-5, atol=1e-6, err_msg=level)
    with pytest.raises(StageError, match="graphOptimization must be one of disable, basic, extended, all; got 'max'"):
        zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                  fetchDict={"p": "probabilities"}, graphOptimization="max").transform(df)
    # the level reaches ONNX Runtime: a session built with it reports it
    data = tiny.tiny_model_bytes()
    sess = sessions.session(hashlib.sha256(data).hexdigest(), lambda: data,
                            sessions.RuntimeOptions(device="cpu", intra_op_threads=1, optimization="disable"))
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def test_an_embedded_model_makes_a_saved_onnx_model_self_contained(spark, zoo_env, pixels, tmp_path, monkeypatch):
    from pyspark.ml import PipelineModel

    source = tmp_path / "model.onnx"
    source.write_bytes(tiny.tiny_model_bytes())
    df = spark.createDataFrame([(i, p.ravel().tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    stage = zoo.stage("onnx_model", modelName=str(source), cut=2, feedDict={"input": "pixels"},
                      fetchDict={"f": "flat"}, embedModel=True)
    want = {r["id"]: r["f"] for r in stage.transform(df).collect()}
    PipelineModel(stages=[stage]).write().overwrite().save(str(tmp_path / "pm"))
    source.unlink()  # the model's only source is gone, and so is the cache
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "fresh-home"))
    loaded = PipelineModel.load(str(tmp_path / "pm")).stages[0]
    assert loaded.getModelName().startswith("sha256:") and loaded.getCut() == 0 and loaded.getShipModel() == "always"
    assert {r["id"]: r["f"] for r in loaded.transform(df).collect()} == want
    # without embedModel the saved stage still names the file that is gone: loading works, running says why
    plain = zoo.stage("onnx_model", modelName=str(source), feedDict={"input": "pixels"}, fetchDict={"f": "flat"})
    plain.write().overwrite().save(str(tmp_path / "plain"))
    with pytest.raises(Exception, match="model.onnx"):
        type(plain).load(str(tmp_path / "plain")).transform(df).collect()


@pytest.mark.parametrize("mode", ["keep", "skip", "error"])
def test_a_bad_row_gets_its_own_outcome_and_the_batch_is_kept(spark, zoo_env, pixels, mode):
    good = [(i, p.ravel().tolist()) for i, p in enumerate(pixels)]
    rows = [*good[:3], (100, None), *good[3:5], (101, [1.0, 2.0]), *good[5:]]
    df = spark.createDataFrame(rows, "id int, pixels array<float>").coalesce(1)
    stage = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                      fetchDict={"p": "probabilities", "top": "logits"}, handleInvalid=mode, batchSize=4)
    if mode == "error":
        with pytest.raises(Exception, match=r"column 'pixels' \(feeding model input 'input'\): null value in row 3\. "
                                            r"Set handleInvalid='skip'"):
            stage.transform(df).collect()
        return
    out = {r["id"]: r for r in stage.transform(df).collect()}
    want = _direct(tiny.tiny_model_bytes(), {"input": pixels}, ["probabilities"])[0]
    for i in range(len(pixels)):  # every good row scored, as if the bad ones were not there
        np.testing.assert_allclose(out[i]["p"], want[i], rtol=1e-6)
    if mode == "skip":
        assert sorted(out) == list(range(len(pixels)))
        return
    assert out[100]["p"] is None and out[100]["top"] is None and out[101]["p"] is None
    # the reason names the column and the model input (not a position, which depends on partitioning)
    assert out[100]["error"].endswith("column 'pixels' (feeding model input 'input'): null value in the row")
    assert "column 'pixels' (feeding model input 'input'): the row holds 2 values; the model input needs 3072" \
        in out[101]["error"]
    assert all(out[i]["error"] is None for i in range(len(pixels)))


def test_execution_providers_are_a_param_in_the_users_order(spark, zoo_env, pixels):
    df = spark.createDataFrame([(i, p.ravel().tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    want = _direct(tiny.tiny_model_bytes(), {"input": pixels}, ["probabilities"])[0]

    def run(providers):
        stage = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                          fetchDict={"p": "probabilities"}, executionProviders=providers)
        return [r["p"] for r in sorted(stage.transform(df).collect(), key=lambda r: r["id"])]

    np.testing.assert_allclose(run(["CPUExecutionProvider"]), want, rtol=1e-6)
    with pytest.raises(Exception, match=r"execution provider 'NoSuchExecutionProvider' is not in this ONNX Runtime "
                                        r"\(.*\); it offers .*CPUExecutionProvider"):
        run(["NoSuchExecutionProvider"])
    from zoo.runtime import sessions

    if "CUDAExecutionProvider" in ort.get_available_providers() and not sessions.cuda_available():
        # onnxruntime-gpu without a GPU (CI): CUDA is passed over for the next provider the user listed ...
        np.testing.assert_allclose(run(["CUDAExecutionProvider", "CPUExecutionProvider"]), want, rtol=1e-6)
        with pytest.raises(Exception, match="none of the execution providers .* can run here"):
            run(["CUDAExecutionProvider"])  # ... and with none left, the stage says so


def _sequence_model() -> bytes:
    """A model that takes no mask: X [batch, tokens] float -> mean over tokens [batch] and X * 2 [batch, tokens]."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["X"], ["mean"], axes=[1], keepdims=0),
             helper.make_node("Add", ["X", "X"], ["double"])]
    graph = helper.make_graph(nodes, "sequence", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", "t"])],
                              [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["b"]),
                               helper.make_tensor_value_info("double", TensorProto.FLOAT, ["b", "t"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_rows_of_different_lengths_without_a_mask_run_in_groups_of_equal_length(spark, zoo_env, tmp_path):
    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=int(n)).astype(np.float32) for n in rng.integers(1, 9, size=23)]
    path = tmp_path / "sequence.onnx"
    path.write_bytes(_sequence_model())
    df = spark.createDataFrame([(i, s.tolist()) for i, s in enumerate(seqs)], "id int, x array<float>")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": "x"}, fetchDict={"m": "mean", "d": "double"})
    runs = {batch: sorted(stage.copy({stage.batchSize: batch}).transform(df.repartition(2)).collect(),
                          key=lambda r: r["id"]) for batch in (1, 3, 64)}
    for batch in (3, 64):  # ONNX Runtime's ReduceMean may differ in the last bit between batch shapes
        assert [r["d"] for r in runs[batch]] == [r["d"] for r in runs[1]], "a row's result is its own"
        np.testing.assert_allclose([r["m"] for r in runs[batch]], [r["m"] for r in runs[1]], rtol=1e-6)
    session = ort.InferenceSession(_sequence_model(), providers=["CPUExecutionProvider"])
    for row, seq in zip(runs[3], seqs):
        mean, double = session.run(["mean", "double"], {"X": seq[None, :]})
        np.testing.assert_allclose(row["m"], mean[0], rtol=1e-6)
        assert row["d"] == double[0].tolist()


def test_token_ids_of_different_lengths_are_padded_with_a_mask_and_cut_back(spark, zoo_env):
    """The tiny BERT-style encoder: input_ids and token_type_ids from columns of different lengths, the
    attention_mask made by the stage; last_hidden_state follows the padded dimension, so each row gets
    exactly its own tokens' vectors, nested [tokens][hidden] with flattenOutputs=False."""
    rng = np.random.default_rng(3)
    ids = [rng.integers(1, len(tiny.TEXT_VOCAB), size=int(n)).tolist() for n in rng.integers(1, 7, size=11)]
    df = spark.createDataFrame([(i, t, [0] * len(t)) for i, t in enumerate(ids)], "id int, ids array<bigint>, "
                               "types array<int>")
    stage = zoo.stage("onnx_model", modelName=tiny.tiny_text_encoder_path(),
                      feedDict={"input_ids": "ids", "token_type_ids": "types"},
                      fetchDict={"hidden": "last_hidden_state"}, flattenOutputs=False, padValue=0.0, batchSize=4)
    out = stage.transform(df.repartition(3))
    assert out.schema["hidden"].dataType.simpleString() == "array<array<float>>"
    rows = sorted(out.collect(), key=lambda r: r["id"])
    session = ort.InferenceSession(tiny.tiny_text_encoder_bytes(), providers=["CPUExecutionProvider"])
    for row, t in zip(rows, ids):
        one = np.array([t], np.int64)
        alone = session.run(["last_hidden_state"], {"input_ids": one, "token_type_ids": one * 0,
                                                    "attention_mask": np.ones_like(one)})[0][0]
        assert len(row["hidden"]) == len(t), "cut back to the row's own tokens"
        np.testing.assert_array_equal(np.array(row["hidden"], np.float32), alone)
    flat = stage.copy({stage.flattenOutputs: True}).transform(df).orderBy("id").first()["hidden"]
    assert len(flat) == len(ids[0]) * 8
    with pytest.raises(StageError, match="maskInput names 'mask'; the model's inputs are input_ids, attention_mask"):
        stage.copy({stage.maskInput: "mask"}).transform(df)
    with pytest.raises(StageError, match="maskInput 'attention_mask' is also fed from column 'ids'"):
        stage.copy({stage.maskInput: "attention_mask", stage.feedDict: {
            "input_ids": "ids", "token_type_ids": "types", "attention_mask": "ids"}}).transform(df)


def test_a_row_whose_lengths_disagree_between_columns_is_invalid(spark, zoo_env):
    df = spark.createDataFrame([(0, [4, 5], [0, 0]), (1, [4, 5, 6], [0, 0]), (2, [7], [0])],
                               "id int, ids array<bigint>, types array<bigint>")
    stage = zoo.stage("onnx_model", modelName=tiny.tiny_text_encoder_path(),
                      feedDict={"input_ids": "ids", "token_type_ids": "types"},
                      fetchDict={"hidden": "last_hidden_state"}, handleInvalid="skip")
    assert sorted(r["id"] for r in stage.transform(df.coalesce(1)).collect()) == [0, 2]


def test_boolean_and_int64_columns_feed_boolean_and_int64_inputs(spark, zoo_env, tmp_path):
    """flags (array<boolean>) -> Not -> a bool output; counts (bigint scalar) -> Mul by 2 -> int64."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Not", ["flags"], ["negated"]), helper.make_node("Add", ["counts", "counts"], ["doubled"])],
        "bools", [helper.make_tensor_value_info("flags", TensorProto.BOOL, ["n", 3]),
                  helper.make_tensor_value_info("counts", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("negated", TensorProto.BOOL, ["n", 3]),
         helper.make_tensor_value_info("doubled", TensorProto.INT64, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "bools.onnx"
    path.write_bytes(model.SerializeToString())
    rows = [(0, [True, False, True], 2**40 + 1), (1, [False, False, False], -3), (2, [True, True, False], 0)]
    df = spark.createDataFrame(rows, "id int, flags array<boolean>, counts bigint")
    out = zoo.stage("onnx_model", modelName=str(path), feedDict={"flags": "flags", "counts": "counts"},
                    fetchDict={"neg": "negated", "twice": "doubled"}, batchSize=2).transform(df)
    assert out.schema["neg"].dataType.simpleString() == "array<boolean>"
    assert out.schema["twice"].dataType.simpleString() == "bigint"
    got = sorted(out.collect(), key=lambda r: r["id"])
    assert [r["neg"] for r in got] == [[not v for v in flags] for _, flags, _ in rows]
    assert [r["twice"] for r in got] == [2 * c for _, _, c in rows], "int64 exactly (no float on the way)"
