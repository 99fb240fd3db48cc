"""``image_transformer``: a serialisable chain of OpenCV operations, run natively per image.

The chain is a list of plain dicts (so it saves with the stage), e.g.::

    t = zoo.stage("image_transformer").resize(shorter=256).center_crop(224, 224).color("BGR2RGB").flip("lr")

Each image is decoded once, every op runs on the same numpy array in OpenCV, and the result is
encoded once (:func:`zoo.stages.workers.images.transform_images`): an image struct like Spark's
``image`` source (default), PNG or JPEG bytes, or a flat array<float> (after ``normalize``).
"""

from __future__ import annotations

import json
from typing import Any

from pyspark import keyword_only
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import HasHandleInvalid, param
from zoo.stages.workers.image_input import EXPECTED, ImageInput, image_column, input_kind

from zoo.errors import StageError

IMAGE_STRUCT = T.StructType([
    T.StructField("origin", T.StringType(), True), T.StructField("height", T.IntegerType(), True),
    T.StructField("width", T.IntegerType(), True), T.StructField("nChannels", T.IntegerType(), True),
    T.StructField("mode", T.IntegerType(), True), T.StructField("data", T.BinaryType(), True),
])
FORMATS = ("struct", "png", "jpeg", "array")
_THRESHOLDS = ("binary", "binary_inv", "trunc", "tozero", "tozero_inv")
_OPS = {  # op -> required keys
    "resize": set(), "center_crop": {"height", "width"}, "crop": {"x", "y", "height", "width"}, "color": {"code"},
    "flip": {"axis"}, "blur": {"ksize"}, "threshold": {"thresh"}, "normalize": set(),
}


def to_ops(value: Any) -> list[dict[str, Any]]:
    """TypeConverter: a list of {"op": ..., params} dicts, checked against the known ops."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list) or not all(isinstance(o, dict) and o.get("op") in _OPS for o in value):
        raise TypeError(f"ops must be a list of {{'op': one of {sorted(_OPS)}, ...}} dicts; got {value!r}")
    for o in value:
        missing = _OPS[o["op"]] - set(o)
        if missing:
            raise TypeError(f"op {o['op']!r} needs {sorted(missing)}; got {o!r}")
    json.dumps(value)
    return [dict(o) for o in value]


class ImageTransformer(ZooTransformer, HasInputCol, HasOutputCol, HasHandleInvalid):
    """Apply a chain of OpenCV ops (``ops``) to each image of ``inputCol`` into ``outputCol``.

    Build the chain with the fluent methods ``resize``, ``center_crop``, ``crop``, ``color``,
    ``flip``, ``blur``, ``threshold`` and ``normalize`` (each appends one op), or set ``ops``
    directly. ``outputFormat``: ``struct`` (Spark's image struct; 8-bit), ``png``, ``jpeg`` or
    ``array`` (float values, row-major HxWxC). ``handleInvalid``: ``error`` (fail naming the
    file or row), ``skip`` (drop the row) or ``keep`` (null output).
    """

    zoo_name = "image_transformer"
    zoo_streaming = True  # checked by the kit's streaming check
    ops = param("the chain: a list of {'op': name, ...params} dicts", to_ops)
    outputFormat = param("struct, png, jpeg or array")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, ops: list | None = None,
                 outputFormat: str | None = None, handleInvalid: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", outputCol="image_out", ops=[], outputFormat="struct")
        self._set(**self._input_kwargs)

    # -- the fluent chain -----------------------------------------------------------------------------
    def _add(self, **op: Any) -> "ImageTransformer":
        return self._set(ops=[*self.getOps(), {k: v for k, v in op.items() if v is not None}])

    def resize(self, height: int | None = None, width: int | None = None, *, shorter: int | None = None) -> "ImageTransformer":
        if shorter is None and (height is None or width is None):
            raise StageError("resize needs height and width, or shorter=")
        return self._add(op="resize", height=height, width=width, shorter=shorter)

    def center_crop(self, height: int, width: int) -> "ImageTransformer":
        return self._add(op="center_crop", height=height, width=width)

    def crop(self, x: int, y: int, height: int, width: int) -> "ImageTransformer":
        return self._add(op="crop", x=x, y=y, height=height, width=width)

    def color(self, code: str) -> "ImageTransformer":
        """An OpenCV conversion without the ``COLOR_`` prefix, e.g. ``BGR2RGB`` or ``BGR2GRAY``."""
        import cv2

        if not hasattr(cv2, f"COLOR_{code}"):
            raise StageError(f"unknown OpenCV color conversion {code!r} (e.g. BGR2RGB, BGR2GRAY)")
        return self._add(op="color", code=code)

    def flip(self, axis: str = "lr") -> "ImageTransformer":
        if axis not in ("lr", "ud", "both"):
            raise StageError(f"flip axis must be lr, ud or both; got {axis!r}")
        return self._add(op="flip", axis=axis)

    def blur(self, ksize: int, sigma: float = 0.0) -> "ImageTransformer":
        if ksize < 1 or ksize % 2 == 0:
            raise StageError(f"blur ksize must be odd and positive; got {ksize}")
        return self._add(op="blur", ksize=ksize, sigma=sigma)

    def threshold(self, thresh: float, maxval: float = 255.0, type: str = "binary") -> "ImageTransformer":  # noqa: A002
        if type not in _THRESHOLDS:
            raise StageError(f"threshold type must be one of {', '.join(_THRESHOLDS)}; got {type!r}")
        return self._add(op="threshold", thresh=thresh, maxval=maxval, type=type)

    def normalize(self, mean: list[float] = (0.0,), std: list[float] = (1.0,), scale: float = 1.0) -> "ImageTransformer":
        return self._add(op="normalize", mean=list(mean), std=list(std), scale=scale)

    # -- schema and transform -------------------------------------------------------------------------
    def transformSchema(self, schema: T.StructType) -> T.StructType:
        if self.getOutputFormat() not in FORMATS:
            raise StageError(f"{self._describe()}: outputFormat must be one of {', '.join(FORMATS)}")
        self._check_handle_invalid()
        self.require_column(schema, image_column(schema, self.getInputCol()), EXPECTED, accept=lambda t: input_kind(t) is not None)
        self.require_new_column(schema, self.getOutputCol())
        out = {"struct": IMAGE_STRUCT, "png": T.BinaryType(), "jpeg": T.BinaryType(),
               "array": T.ArrayType(T.FloatType(), False)}[self.getOutputFormat()]
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), out, True)])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.images import TransformJob, transform_images

        schema = self.transformSchema(dataset.schema)
        job = TransformJob(ImageInput.of(dataset.schema, self.getInputCol()), tuple(self.getOps()),
                           self.getOutputFormat(), self.getHandleInvalid(), self.getOutputCol(), self._describe())
        return dataset.mapInArrow(lambda batches: transform_images(batches, job), schema)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        df = spark.createDataFrame([*tiny.image_rows(), ("file:///examples/bad.jpg", b"junk")],
                                   "path string, content binary")
        return [
            StageExample(cls(handleInvalid="keep").resize(shorter=36).center_crop(32, 32).color("BGR2RGB").flip("lr"), df),
            StageExample(cls(outputFormat="png", handleInvalid="skip").color("BGR2GRAY").blur(3).threshold(128), df),
            StageExample(cls(outputFormat="array", handleInvalid="skip", outputCol="x").resize(8, 8)
                         .normalize([0.5], [0.25], 1 / 255), df),
        ]
