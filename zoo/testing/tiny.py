"""A tiny seeded image classifier and a few JPEGs: the realistic examples the model stages give the kit.

Small enough to build in milliseconds, real enough to exercise decoding, preprocessing, cuts and
ONNX Runtime: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax on 3x32x32 input.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

IMAGE_SIZE = 32
PREPROCESS = {
    "color_order": "RGB",
    "resize": {"mode": "shorter_side", "size": 36, "interpolation": "bilinear"},
    "crop": {"mode": "center", "size": [IMAGE_SIZE, IMAGE_SIZE]},
    "scale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def tiny_model_bytes(seed: int = 0) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (5, 4)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (5,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sparkzoo-tiny")
    model.ir_version = 8
    return model.SerializeToString()


def _written(name: str, data: bytes) -> str:
    path = Path(tempfile.mkdtemp(prefix="zoo-tiny-")) / name
    path.write_bytes(data)
    return str(path)


@lru_cache(maxsize=1)
def tiny_model_path() -> str:
    """The tiny model written once per process to a temporary file (its path is a valid modelName)."""
    return _written("tiny.onnx", tiny_model_bytes())


def jpeg(height: int, width: int, seed: int) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)), np.full_like(xx, 128)], -1)
    img = np.clip(base + rng.integers(-40, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


def image_rows() -> list[tuple[str, bytes]]:
    """(path, JPEG bytes) rows of a few sizes and aspect ratios."""
    sizes = [(40, 60), (64, 48), (36, 36), (100, 50), (48, 90)]
    return [(f"file:///examples/img{i}.jpg", jpeg(h, w, i)) for i, (h, w) in enumerate(sizes)]


TEXT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "the", "snow", "leopard", "on", "ridge", "camera", "saw",
              "nothing", "!", "?", "-"]


def tiny_text_encoder_bytes(hidden: int = 8, seed: int = 0) -> bytes:
    """A tiny text encoder with a BERT-style signature: ``input_ids``, ``attention_mask``, ``token_type_ids``
    ([batch, tokens] int64) -> ``last_hidden_state`` [batch, tokens, hidden] (embedding lookup, tanh, masked)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 1, (len(TEXT_VOCAB), hidden)).astype(np.float32), "word_emb"),
             numpy_helper.from_array(rng.normal(0, 0.1, (2, hidden)).astype(np.float32), "type_emb"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2")]
    nodes = [
        helper.make_node("Gather", ["word_emb", "input_ids"], ["words"]),
        helper.make_node("Gather", ["type_emb", "token_type_ids"], ["types"]),
        helper.make_node("Add", ["words", "types"], ["summed"]),
        helper.make_node("Tanh", ["summed"], ["hidden"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["hidden", "mask3"], ["last_hidden_state"]),
    ]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in
           ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden])
    graph = helper.make_graph(nodes, "tiny-text-encoder", ins, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sparkzoo-tiny")
    model.ir_version = 8
    return model.SerializeToString()


def tiny_tokenizer_json() -> str:
    """A word-level ``tokenizers`` tokenizer for :data:`TEXT_VOCAB`: lower-cases, splits on whitespace and
    punctuation, wraps each text in [CLS] ... [SEP] (as BERT's does)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TEXT_VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok.to_str()


@lru_cache(maxsize=1)
def tiny_text_encoder_path() -> str:
    return _written("tiny-text-encoder.onnx", tiny_text_encoder_bytes())


@lru_cache(maxsize=1)
def tiny_tokenizer_path() -> str:
    return _written("tokenizer.json", tiny_tokenizer_json().encode("utf-8"))


TINY_LABELS = ["snow leopard", "ibex", "blue sheep", "red fox", "empty"]  # the tiny model's 5 classes


@lru_cache(maxsize=1)
def tiny_labels_path() -> str:
    """A label file (one name per line) for the tiny model's five classes."""
    return _written("tiny-labels.txt", "".join(f"{name}\n" for name in TINY_LABELS).encode("utf-8"))


# -- a tiny face detector in the Ultra-Light layout ------------------------------------------------------
DETECTOR_SIZE = (24, 32)  # input height, width
DETECTOR_PREPROCESS = {
    "color_order": "RGB", "resize": {"mode": "exact", "size": list(DETECTOR_SIZE), "interpolation": "opencv-bilinear"},
    "crop": None, "scale": 1.0, "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0],
}
DETECTOR_RECIPE = {"family": "ultraface", "score_threshold": 0.5, "nms_iou": 0.3}


def tiny_detector_bytes() -> bytes:
    """Scores ``[N, 4, 2]`` and boxes ``[N, 4, 4]`` like the Ultra-Light detectors: one candidate box
    per image quadrant (normalised corners), scored by the quadrant's brightness, so brighter
    quadrants are "faces" and what the stage reports follows from the pixels."""
    from onnx import TensorProto, helper, numpy_helper

    h, w = DETECTOR_SIZE
    quads = np.array([[0, 0, .5, .5], [.5, 0, 1, .5], [0, .5, .5, 1], [.5, .5, 1, 1]], np.float32)[None]
    inits = [numpy_helper.from_array(quads, "quads"),
             numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one"),
             numpy_helper.from_array(np.array([4.0], np.float32), "gain")]
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[h // 2, w // 2], strides=[h // 2, w // 2]),
        helper.make_node("ReduceMean", ["pooled"], ["bright"], axes=[1], keepdims=1),  # [N, 1, 2, 2]
        helper.make_node("Shape", ["bright"], ["bshape"]),
        helper.make_node("Slice", ["bshape", "zero_i", "one_i"], ["n"]),
        helper.make_node("Concat", ["n", "four_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["bright", "target"], ["q"]),  # [N, 4, 1]
        helper.make_node("Mul", ["q", "gain"], ["qg"]),
        helper.make_node("Sigmoid", ["qg"], ["face"]),
        helper.make_node("Sub", ["one", "face"], ["background"]),
        helper.make_node("Concat", ["background", "face"], ["scores"], axis=2),
        helper.make_node("Mul", ["q", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "quads"], ["boxes"]),  # [N, 4, 4]
    ]
    inits += [numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
              numpy_helper.from_array(np.array([1], np.int64), "one_i"),
              numpy_helper.from_array(np.array([4, 1], np.int64), "four_one")]
    graph = helper.make_graph(
        nodes, "tiny-detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, 2]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="sparkzoo-tiny")
    model.ir_version = 8
    return model.SerializeToString()


@lru_cache(maxsize=1)
def tiny_detector_path() -> str:
    """The tiny detector written once per process (its path is a valid modelName)."""
    return _written("tiny-detector.onnx", tiny_detector_bytes())


@lru_cache(maxsize=1)
def tiny_detector_labels_path() -> str:
    return _written("tiny-detector-labels.txt", b"background\nface\n")
