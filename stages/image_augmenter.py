"""``image_augmenter``: extra rows with flipped images, so training data doubles as in the paper."""

from __future__ import annotations

from typing import Iterator

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from zoo.errors import StageError
from zoo.stages._base import StageExample, ZooTransformer
from zoo.stages.image_featurizer import input_kind

VARIANTS = {"flip_lr": 1, "flip_ud": 0, "flip_both": -1}  # cv2.flip codes
EXPECTED = "binary image bytes or an image struct"


def _augment(batches: Iterator, input_col: str, kind: str, variants: list[str], variant_col: str) -> Iterator:
    import cv2
    import numpy as np
    import pyarrow as pa

    from zoo import _imaging
    from zoo.errors import ImageError

    for batch in batches:
        col = batch.schema.get_field_index(input_col)
        items = batch.column(col).to_pylist()
        take, images, labels = [], [], []
        for i, item in enumerate(items):
            take.append(i)
            images.append(item)
            labels.append("original")
            try:
                pixels = (_imaging.from_struct(item["height"], item["width"], item["nChannels"], item["mode"], item["data"])
                          if kind == "struct" and item is not None else _imaging.decode(item))
            except ImageError:
                continue  # the featurizer reports it under its own handleInvalid; nothing is dropped here
            for name in variants:
                flipped = np.ascontiguousarray(cv2.flip(pixels, VARIANTS[name]))
                if kind == "struct":
                    h, w = flipped.shape[:2]
                    value = {**item, "height": h, "width": w, "nChannels": 3, "mode": 16, "data": flipped.tobytes()}
                else:
                    ok, png = cv2.imencode(".png", flipped)  # lossless: no second JPEG generation
                    value = png.tobytes()
                take.append(i)
                images.append(value)
                labels.append(name)
        out = batch.take(pa.array(take, type=pa.int64()))
        columns = list(out.columns)
        columns[col] = pa.array(images, type=batch.schema.field(col).type)
        yield pa.RecordBatch.from_arrays([*columns, pa.array(labels, type=pa.string())],
                                         names=[*batch.schema.names, variant_col])


class ImageAugmenter(ZooTransformer, HasInputCol):
    """Emit, after each image row, one row per flipped variant, with ``variantCol`` saying which.

    ``variants`` is a list of ``flip_lr`` (left-right), ``flip_ud`` (up-down), ``flip_both``.
    Encoded images are flipped and re-encoded as PNG (lossless); image structs are flipped in
    place. Originals are always kept (``variant = "original"``), undecodable ones without
    variants, so the featurizer's ``handleInvalid`` still sees and reports them. Use it for
    training, and at test time together with ``group_average`` over a photo id.
    """

    zoo_name = "image_augmenter"
    zoo_rows = "expand"  # the originals plus flipped copies
    zoo_streaming = True  # checked by the kit's streaming check
    variants = Param(Params._dummy(), "variants", "flips to add per image: flip_lr, flip_ud, flip_both",
                     TypeConverters.toListString)
    variantCol = Param(Params._dummy(), "variantCol", "output column naming each row's variant", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, variants: list[str] | None = None, variantCol: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", variants=["flip_lr"], variantCol="variant")
        self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "ImageAugmenter":
        return self._set(inputCol=value)

    def setVariants(self, value: list[str]) -> "ImageAugmenter":
        return self._set(variants=value)

    def getVariants(self) -> list[str]:
        return self.getOrDefault(self.variants)

    def setVariantCol(self, value: str) -> "ImageAugmenter":
        return self._set(variantCol=value)

    def getVariantCol(self) -> str:
        return self.getOrDefault(self.variantCol)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        unknown = [v for v in self.getVariants() if v not in VARIANTS]
        if unknown:
            raise StageError(f"{self._describe()}: unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        self._require_column(schema, self.getInputCol(), EXPECTED,
                             accept=lambda t: input_kind(t) in ("binary", "struct"))
        self._require_new_column(schema, self.getVariantCol())
        return T.StructType([*schema.fields, T.StructField(self.getVariantCol(), T.StringType(), True)])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        args = (self.getInputCol(), input_kind(dataset.schema[self.getInputCol()].dataType), list(self.getVariants()),
                self.getVariantCol())
        return dataset.mapInArrow(lambda batches: _augment(batches, *args), self.transformSchema(dataset.schema))

    @classmethod
    def zoo_examples(cls, spark):
        from zoo import _tiny

        rows = [*_tiny.image_rows()[:3], ("file:///examples/bad.jpg", b"not an image")]
        df = spark.createDataFrame(rows, "path string, content binary")
        return [
            StageExample(cls(), df),
            StageExample(cls(variants=["flip_lr", "flip_ud"], variantCol="flip"), df),
        ]
