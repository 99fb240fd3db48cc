"""ONNX graphs the tests build: a float ResNet-shaped network with seeded weights."""

from __future__ import annotations

import numpy as np


def resnet_like(seed: int = 0, size: int = 32) -> bytes:
    """stem Conv -> BatchNormalization -> Relu -> residual block (Conv, Relu, Conv, Add) -> Relu ->
    GlobalAveragePool -> Flatten -> Gemm: the tail of ResNet-50 v1 in miniature (fp32, opset 13)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [
        w("stem_w", 8, 3, 3, 3), w("stem_b", 8, scale=0.1),
        numpy_helper.from_array(np.abs(rng.normal(1, 0.1, 8)).astype(np.float32), "bn_scale"),
        w("bn_bias", 8, scale=0.1), w("bn_mean", 8, scale=0.1),
        numpy_helper.from_array(np.abs(rng.normal(1, 0.1, 8)).astype(np.float32), "bn_var"),
        w("c1_w", 8, 8, 3, 3, scale=0.2), w("c1_b", 8, scale=0.1),
        w("c2_w", 8, 8, 3, 3, scale=0.2), w("c2_b", 8, scale=0.1),
        w("fc_w", 10, 8), w("fc_b", 10, scale=0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["data", "stem_w", "stem_b"], ["stem"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["stem", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["stem_relu"]),
        helper.make_node("Conv", ["stem_relu", "c1_w", "c1_b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["c1_relu"]),
        helper.make_node("Conv", ["c1_relu", "c2_w", "c2_b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "stem_relu"], ["block"]),
        helper.make_node("Relu", ["block"], ["block_relu"]),
        helper.make_node("GlobalAveragePool", ["block_relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "resnet_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()
