"""``image_augmenter``: extra rows with flipped images, so training data doubles as in the paper."""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.param.shared import HasInputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import param
from zoo.stages.workers.image_input import ImageInput, image_column, input_kind
from zoo.stages.workers.images import FLIPS

from zoo.errors import StageError

EXPECTED = "binary image bytes or an image struct"


class ImageAugmenter(ZooTransformer, HasInputCol):
    """Emit, after each image row, one row per flipped variant, with ``variantCol`` saying which.

    ``variants`` is a list of ``flip_lr`` (left-right), ``flip_ud`` (up-down), ``flip_both``.
    Encoded images are flipped and re-encoded as PNG (lossless); image structs are flipped in
    place. Given ``zoo.read_images`` rows of local files (a marked ``path`` column, no bytes), the
    files are read here into a new ``inputCol`` (``content``) column holding the originals and the
    flips. Originals are always kept (``variant = "original"``), undecodable or unreadable ones
    without variants, so the featurizer's ``handleInvalid`` still sees and reports them. Use it for
    training, and at test time together with ``group_average`` over a photo id.
    """

    zoo_name = "image_augmenter"
    zoo_rows = "expand"  # the originals plus flipped copies
    zoo_streaming = True  # checked by the kit's streaming check
    variants = param("flips to add per image: flip_lr, flip_ud, flip_both", list[str])
    variantCol = param("output column naming each row's variant")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, variants: list[str] | None = None, variantCol: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", variants=["flip_lr"], variantCol="variant")
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        unknown = [v for v in self.getVariants() if v not in FLIPS]
        if unknown:
            raise StageError(f"{self._describe()}: unknown variants {unknown}; choose from {', '.join(FLIPS)}")
        column = image_column(schema, self.getInputCol())
        files = column != self.getInputCol()  # zoo.read_images left the bytes out: they are read here, once
        self.require_column(schema, column, EXPECTED,
                            accept=lambda t: input_kind(t) in ("binary", "struct") or (files and input_kind(t) == "path"))
        self.require_new_column(schema, self.getVariantCol())
        added = [T.StructField(self.getInputCol(), T.BinaryType(), True)] if files else []
        return T.StructType([*schema.fields, *added, T.StructField(self.getVariantCol(), T.StringType(), True)])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.images import AugmentJob, augment_images

        schema = self.transformSchema(dataset.schema)
        image = ImageInput.of(dataset.schema, self.getInputCol())
        job = AugmentJob(image, tuple(self.getVariants()), self.getVariantCol(),
                         bytes_col=self.getInputCol() if image.column != self.getInputCol() else None)
        return dataset.mapInArrow(lambda batches: augment_images(batches, job), schema)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        rows = [*tiny.image_rows()[:3], ("file:///examples/bad.jpg", b"not an image")]
        df = spark.createDataFrame(rows, "path string, content binary")
        return [
            StageExample(cls(), df),
            StageExample(cls(variants=["flip_lr", "flip_ud"], variantCol="flip"), df),
        ]
