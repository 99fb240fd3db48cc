"""ResNet-50 v1 as an ONNX graph with seeded weights: the real architecture and FLOPs, no download.

Used when the pretrained ``resnet50-v1-12`` cannot be pulled (this machine has no internet); the
benchmark says so in its output. Layout as in the ONNX Model Zoo's v1 (stride on the first 1x1
convolution of a downsampling block), fp32, opset 13, input ``data`` [N, 3, 224, 224].
"""

from __future__ import annotations

import numpy as np


def build(seed: int = 0) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        return f"{prefix}{count[0]}"

    def conv_bn(x: str, cin: int, cout: int, k: int, stride: int, relu: bool, gamma: float = 1.0) -> str:
        w, b = name("w"), name("b")
        inits.append(numpy_helper.from_array(rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32), w))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
        c = name("conv")
        nodes.append(helper.make_node("Conv", [x, w, b], [c], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[k // 2] * 4))
        s, bias, mean, var = name("bn_s"), name("bn_b"), name("bn_m"), name("bn_v")
        inits.extend([numpy_helper.from_array(np.full(cout, gamma, np.float32), s),
                  numpy_helper.from_array(rng.normal(0, 0.05, cout).astype(np.float32), bias),
                  numpy_helper.from_array(np.zeros(cout, np.float32), mean),
                  numpy_helper.from_array(np.ones(cout, np.float32), var)])
        out = name("bn")
        nodes.append(helper.make_node("BatchNormalization", [c, s, bias, mean, var], [out]))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [out], [r]))
            return r
        return out

    x = conv_bn("data", 3, 64, 7, 2, True)
    pool = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [pool], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = pool, 64
    for stage, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv_bn(x, cin, width, 1, stride, True)
            y = conv_bn(y, width, width, 3, 1, True)
            y = conv_bn(y, width, width * 4, 1, 1, False, gamma=0.2)
            shortcut = conv_bn(x, cin, width * 4, 1, stride, False) if block == 0 else x
            added, out = name("add"), name("relu")
            nodes += [helper.make_node("Add", [y, shortcut], [added]), helper.make_node("Relu", [added], [out])]
            x, cin = out, width * 4
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pool5"]), helper.make_node("Flatten", ["pool5"], ["flatten"])]
    inits += [numpy_helper.from_array(rng.normal(0, 0.01, (1000, 2048)).astype(np.float32), "fc_w"),
              numpy_helper.from_array(np.zeros(1000, np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flatten", "fc_w", "fc_b"], ["logits"], transB=1))
    graph = helper.make_graph(nodes, "resnet50_v1_seeded",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sparkzoo-bench")
    model.ir_version = 8
    return model.SerializeToString()
