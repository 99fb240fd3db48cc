"""image_transformer: the chain equals the same OpenCV calls made by hand, persists, and feeds the featurizer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pyspark.ml import Pipeline

import zoo
from zoo.testing import tiny
from zoo.errors import StageError


def test_chain_equals_hand_written_opencv_and_survives_save_load(spark, tmp_path):
    data = tiny.jpeg(60, 90, 7)
    df = spark.createDataFrame([("a.jpg", data)], "path string, content binary")
    stage = (zoo.stage("image_transformer", outputFormat="png")
             .resize(shorter=40).center_crop(32, 32).color("BGR2GRAY").blur(3, 1.0).threshold(100, type="binary_inv"))
    stage.save(str(tmp_path / "t"))
    loaded = type(stage).load(str(tmp_path / "t"))
    assert loaded.getOps() == stage.getOps()
    got = cv2.imdecode(np.frombuffer(loaded.transform(df).first()["image_out"], np.uint8), cv2.IMREAD_UNCHANGED)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    img = cv2.resize(img, (int(40 * 90 / 60), 40), interpolation=cv2.INTER_AREA)
    top, left = int(round((40 - 32) / 2)), int(round((60 - 32) / 2))
    img = cv2.cvtColor(img[top:top + 32, left:left + 32], cv2.COLOR_BGR2GRAY)
    want = cv2.threshold(cv2.GaussianBlur(img, (3, 3), 1.0), 100, 255, cv2.THRESH_BINARY_INV)[1]
    np.testing.assert_array_equal(got, want)


def test_struct_output_feeds_the_featurizer_like_the_bytes_do(spark):
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
    params = dict(modelName=tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array")
    flip = zoo.stage("image_transformer", outputCol="flipped").flip("lr")
    via_struct = Pipeline(stages=[flip, zoo.stage("image_featurizer", inputCol="flipped", **params)]).fit(df)
    struct_rows = {r["path"]: r["features"] for r in via_struct.transform(df).collect()}
    augmented = zoo.stage("image_augmenter").transform(df).where("variant = 'flip_lr'")
    bytes_rows = {r["path"]: r["features"] for r in zoo.stage("image_featurizer", **params).transform(augmented).collect()}
    assert len(struct_rows) == 5 and struct_rows == bytes_rows


def test_normalize_to_array_and_bad_chains(spark):
    df = spark.createDataFrame([("a", tiny.jpeg(4, 4, 1))], "path string, content binary")
    row = zoo.stage("image_transformer", outputFormat="array").normalize([128.0], [64.0]).transform(df).first()
    img = cv2.imdecode(np.frombuffer(tiny.jpeg(4, 4, 1), np.uint8), cv2.IMREAD_COLOR).astype(np.float32)
    np.testing.assert_allclose(row["image_out"], ((img - 128) / 64).ravel())
    with pytest.raises(StageError, match="unknown OpenCV color conversion 'BGR2XYZW'"):
        zoo.stage("image_transformer").color("BGR2XYZW")
    with pytest.raises(StageError, match="op .crop. needs"):
        zoo.stage("image_transformer", ops=[{"op": "crop", "x": 1}])
    with pytest.raises(Exception, match="cannot encode a float32 image as png"):
        zoo.stage("image_transformer", outputFormat="png").normalize().transform(df).collect()
