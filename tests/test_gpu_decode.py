"""decode='gpu' | 'auto' | 'cpu' (issue 21, the parts that run without a GPU): the Param, the fallback
to OpenCV where nvImageCodec or a CUDA device is missing (this machine has neither), and the logic
around the GPU decoder, exercised with a stand-in for the nvImageCodec library (a fake at a true
system edge: the library needs an NVIDIA GPU)."""

from __future__ import annotations

import json
import logging
import sys
import types

import cv2
import numpy as np
import pytest

import zoo
from zoo.errors import StageError
from zoo.runtime import gpu_decode
from zoo.testing import tiny


def test_gpu_decode_falls_back_to_opencv_here_with_the_same_features(spark, zoo_env, caplog):
    assert gpu_decode.unavailable_reason("cpu") == "the stage runs on the CPU (device='cpu')"
    why = gpu_decode.unavailable_reason("auto")
    assert why in ("nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu12)", "no CUDA device")
    with caplog.at_level(logging.WARNING, logger="zoo.gpu_decode"):
        assert gpu_decode.decoder_for("gpu", "auto", "stage image_featurizer (test)", 10**8) is None
        assert gpu_decode.decoder_for("auto", "auto", "stage auto (test)", 10**8) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"stage image_featurizer (test): decode='gpu' falls back to OpenCV on the CPU: {why}"], "gpu says so, auto not"
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")

    def features(decode: str) -> list:
        stage = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=1, decode=decode,
                          preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array")
        return [r["features"] for r in stage.transform(df).orderBy("path").collect()]

    assert features("gpu") == features("cpu") == features("auto")
    with pytest.raises(StageError, match="decode must be one of auto, cpu, gpu; got 'nvjpeg'"):
        features("nvjpeg")


class _FakeImage:
    def __init__(self, rgb):
        self.rgb = rgb

    def cpu(self):
        return self.rgb


def test_the_gpu_path_keeps_the_cpu_checks_and_hands_rejected_images_to_the_cpu(monkeypatch):
    """A stand-in nvImageCodec that decodes with OpenCV (to RGB) but rejects one image, as the real
    one rejects CMYK or exotic progressive JPEGs: the decoder must return BGR like the CPU path, None
    for the rejected image and for any the CPU checks refuse (those get the CPU path's own error)."""
    calls = []

    class Decoder:
        def decode(self, items, params=None):
            calls.append(len(items))
            out = []
            for data in items:
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                out.append(None if bgr.shape[1] == 41 else _FakeImage(bgr[..., ::-1].copy()))
            return out

    fake = types.SimpleNamespace(Decoder=Decoder, DecodeParams=lambda **kw: kw,
                                 ColorSpec=types.SimpleNamespace(RGB="rgb"))
    monkeypatch.setitem(sys.modules, "nvidia", types.SimpleNamespace(nvimgcodec=fake))
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", fake)
    good, rejected, big = tiny.jpeg(32, 40, 1), tiny.jpeg(32, 41, 2), tiny.jpeg(300, 300, 3)
    truncated = good[: len(good) // 2]
    decoder = gpu_decode.GpuDecoder(max_pixels=100 * 100)
    out = decoder.decode_many([good, None, rejected, truncated, big, b""])
    assert np.array_equal(out[0], cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR)), "BGR, as OpenCV"
    assert out[1:] == [None] * 5
    assert calls == [2], "only the images that pass the CPU checks reach the GPU, in one batch"
