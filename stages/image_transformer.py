"""``image_transformer``: a serialisable chain of OpenCV operations, run natively per image.

The chain is a list of plain dicts (so it saves with the stage), e.g.::

    t = zoo.stage("image_transformer").resize(shorter=256).center_crop(224, 224).color("BGR2RGB").flip("lr")

Each image is decoded once, every op runs on the same numpy array in OpenCV, and the result is
encoded once: an image struct like Spark's ``image`` source (default), PNG or JPEG bytes, or a
flat array<float> (after ``normalize``).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from zoo.errors import StageError
from zoo.stages._base import StageExample, ZooTransformer
from zoo.stages.image_featurizer import EXPECTED, input_kind

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


def apply_ops(img: np.ndarray, ops: list[dict[str, Any]]) -> np.ndarray:
    """Run the chain on one image (numpy in, numpy out; no encoding between ops)."""
    import cv2

    for o in ops:
        op = o["op"]
        if op == "resize":
            h, w = img.shape[:2]
            if o.get("shorter"):
                s = int(o["shorter"])
                size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
            else:
                size = (int(o["width"]), int(o["height"]))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
        elif op in ("center_crop", "crop"):
            h, w = img.shape[:2]
            ch, cw = int(o["height"]), int(o["width"])
            y = int(round((h - ch) / 2.0)) if op == "center_crop" else int(o["y"])
            x = int(round((w - cw) / 2.0)) if op == "center_crop" else int(o["x"])
            if y < 0 or x < 0 or y + ch > h or x + cw > w:
                from zoo.errors import ImageError

                raise ImageError(f"cannot crop {ch}x{cw} at ({x}, {y}) from a {h}x{w} image")
            img = img[y:y + ch, x:x + cw]
        elif op == "color":
            img = cv2.cvtColor(img, getattr(cv2, f"COLOR_{o['code']}"))
        elif op == "flip":
            img = cv2.flip(img, {"lr": 1, "ud": 0, "both": -1}[o["axis"]])
        elif op == "blur":
            k = int(o["ksize"])
            img = cv2.GaussianBlur(img, (k, k), float(o.get("sigma", 0)))
        elif op == "threshold":
            kind = getattr(cv2, f"THRESH_{o.get('type', 'binary').upper()}")
            img = cv2.threshold(img, float(o["thresh"]), float(o.get("maxval", 255)), kind)[1]
        elif op == "normalize":
            channels = img.shape[2] if img.ndim == 3 else 1
            mean = np.resize(np.asarray(o.get("mean", [0.0]), np.float32), channels)
            std = np.resize(np.asarray(o.get("std", [1.0]), np.float32), channels)
            img = (img.astype(np.float32) * float(o.get("scale", 1.0)) - mean) / std
    return np.ascontiguousarray(img)


def _encode(img: np.ndarray, fmt: str, origin: str | None):
    import cv2

    if fmt == "array":
        return img.astype(np.float32).ravel()
    if img.dtype != np.uint8:
        from zoo.errors import ImageError

        raise ImageError(f"cannot encode a {img.dtype} image as {fmt}; use outputFormat='array' after normalize")
    if fmt in ("png", "jpeg"):
        ok, data = cv2.imencode(".png" if fmt == "png" else ".jpg", img)
        return data.tobytes()
    channels = img.shape[2] if img.ndim == 3 else 1
    mode = {1: 0, 3: 16, 4: 24}[channels]
    return {"origin": origin, "height": img.shape[0], "width": img.shape[1], "nChannels": channels, "mode": mode,
            "data": img.tobytes()}


def _transform_batches(batches: Iterator, cfg: dict[str, Any]) -> Iterator:
    import pyarrow as pa

    from zoo.errors import ImageError
    from zoo.stages._inference import ImageJob, _pixels, _row_name

    job = ImageJob(None, cfg["input_col"], cfg["kind"], 1, None, cfg["handle_invalid"], "", cfg["max_pixels"],
                   cfg["output_col"], cfg["stage"], cfg["name_col"])
    out_type = cfg["arrow_type"]
    for batch in batches:
        items = batch.column(batch.schema.get_field_index(cfg["input_col"])).to_pylist()
        values, keep = [], []
        for i, item in enumerate(items):
            try:
                origin = item.get("origin") if isinstance(item, dict) else None
                values.append(_encode(apply_ops(_pixels(item, job), cfg["ops"]), cfg["format"], origin))
                keep.append(True)
            except Exception as exc:  # ImageError or an OpenCV error on this image
                reason = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
                if cfg["handle_invalid"] == "error":
                    raise ImageError(f"{cfg['stage']}: {_row_name(batch, job, i, 0)}: {reason}") from None
                values.append(None)
                keep.append(cfg["handle_invalid"] == "keep")
        out = pa.RecordBatch.from_arrays([*batch.columns, pa.array(values, type=out_type)],
                                         names=[*batch.schema.names, cfg["output_col"]])
        yield out if all(keep) else out.filter(pa.array(keep))


class ImageTransformer(ZooTransformer, HasInputCol, HasOutputCol):
    """Apply a chain of OpenCV ops (``ops``) to each image of ``inputCol`` into ``outputCol``.

    Build the chain with the fluent methods ``resize``, ``center_crop``, ``crop``, ``color``,
    ``flip``, ``blur``, ``threshold`` and ``normalize`` (each appends one op), or set ``ops``
    directly. ``outputFormat``: ``struct`` (Spark's image struct; 8-bit), ``png``, ``jpeg`` or
    ``array`` (float values, row-major HxWxC). ``handleInvalid``: ``error`` (fail naming the
    file or row), ``skip`` (drop the row) or ``keep`` (null output).
    """

    zoo_name = "image_transformer"
    zoo_streaming = True  # checked by the kit's streaming check
    ops = Param(Params._dummy(), "ops", "the chain: a list of {'op': name, ...params} dicts", to_ops)
    outputFormat = Param(Params._dummy(), "outputFormat", "struct, png, jpeg or array", TypeConverters.toString)
    handleInvalid = Param(Params._dummy(), "handleInvalid", "what an undecodable image does: error, skip or keep (null)",
                          TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, ops: list | None = None,
                 outputFormat: str | None = None, handleInvalid: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", outputCol="image_out", ops=[], outputFormat="struct", handleInvalid="error")
        self._set(**self._input_kwargs)

    # -- params ---------------------------------------------------------------------------------------
    def setInputCol(self, value: str) -> "ImageTransformer":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "ImageTransformer":
        return self._set(outputCol=value)

    def setOps(self, value: list[dict[str, Any]]) -> "ImageTransformer":
        return self._set(ops=value)

    def getOps(self) -> list[dict[str, Any]]:
        return self.getOrDefault(self.ops)

    def setOutputFormat(self, value: str) -> "ImageTransformer":
        return self._set(outputFormat=value)

    def getOutputFormat(self) -> str:
        return self.getOrDefault(self.outputFormat)

    def setHandleInvalid(self, value: str) -> "ImageTransformer":
        return self._set(handleInvalid=value)

    def getHandleInvalid(self) -> str:
        return self.getOrDefault(self.handleInvalid)

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
        if self.getHandleInvalid() not in ("error", "skip", "keep"):
            raise StageError(f"{self._describe()}: handleInvalid must be error, skip or keep")
        self._require_column(schema, self.getInputCol(), EXPECTED, accept=lambda t: input_kind(t) is not None)
        self._require_new_column(schema, self.getOutputCol())
        out = {"struct": IMAGE_STRUCT, "png": T.BinaryType(), "jpeg": T.BinaryType(),
               "array": T.ArrayType(T.FloatType(), False)}[self.getOutputFormat()]
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), out, True)])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        import pyarrow as pa

        from zoo._imaging import DEFAULT_MAX_PIXELS

        schema = self.transformSchema(dataset.schema)
        kind = input_kind(dataset.schema[self.getInputCol()].dataType)
        arrow = {"struct": pa.struct([("origin", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
                                      ("nChannels", pa.int32()), ("mode", pa.int32()), ("data", pa.binary())]),
                 "png": pa.binary(), "jpeg": pa.binary(), "array": pa.list_(pa.float32())}[self.getOutputFormat()]
        cfg = {"input_col": self.getInputCol(), "kind": kind, "ops": self.getOps(), "format": self.getOutputFormat(),
               "handle_invalid": self.getHandleInvalid(), "output_col": self.getOutputCol(), "stage": self._describe(),
               "max_pixels": DEFAULT_MAX_PIXELS, "arrow_type": arrow,
               "name_col": self.getInputCol() if kind in ("path", "struct") else ("path" if "path" in dataset.columns else None)}
        return dataset.mapInArrow(lambda batches: _transform_batches(batches, cfg), schema)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo import _tiny

        df = spark.createDataFrame([*_tiny.image_rows(), ("file:///examples/bad.jpg", b"junk")],
                                   "path string, content binary")
        return [
            StageExample(cls(handleInvalid="keep").resize(shorter=36).center_crop(32, 32).color("BGR2RGB").flip("lr"), df),
            StageExample(cls(outputFormat="png", handleInvalid="skip").color("BGR2GRAY").blur(3).threshold(128), df),
            StageExample(cls(outputFormat="array", handleInvalid="skip", outputCol="x").resize(8, 8)
                         .normalize([0.5], [0.25], 1 / 255), df),
        ]
