"""``image_featurizer``: images in, deep features out, preprocessed exactly as the model's authors did.

The driver resolves ``modelName`` (and ``cut``) to sha256s once; executors get the model from
their node's zoo cache, the driver's shipped file, or its sources (see ``zoo._modelref``), and
keep one ONNX Runtime session per Python worker. Decoding and preprocessing run in native OpenCV
inside ``mapInArrow``, in inner batches of ``batchSize`` rows.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from zoo._jvm_functions import to_vector
from zoo.errors import SchemaError, StageError
from zoo.stages._base import StageExample, ZooTransformer
from zoo.stages._model_params import HasModel

IMAGE_FIELDS = {"height", "width", "nChannels", "mode", "data"}
EXPECTED = "binary image bytes (binaryFile's content), an image struct (Spark's image source) or a file path string"


def input_kind(t: T.DataType) -> str | None:
    if isinstance(t, T.BinaryType):
        return "binary"
    if isinstance(t, T.StringType):
        return "path"
    if isinstance(t, T.StructType) and IMAGE_FIELDS <= set(t.fieldNames()):
        return "struct"
    return None


class ImageFeaturizer(ZooTransformer, HasModel, HasInputCol, HasOutputCol):
    """Featurize images with a zoo model cut ``cut`` layers from its head.

    ``inputCol`` holds encoded image bytes (``binaryFile``), an image struct (Spark's ``image``
    source, BGR) or a file path. ``outputFormat`` is ``vector`` (an ML vector, default) or
    ``array`` (array<float>). ``handleInvalid`` decides what an undecodable image does:
    ``error`` (fail, naming the file or row), ``skip`` (drop the row) or ``keep`` (null features,
    the reason in ``errorCol``).
    """

    zoo_name = "image_featurizer"
    zoo_streaming = True  # checked by the kit's streaming check

    preprocess = Param(
        Params._dummy(), "preprocess",
        "how images are prepared: '' for the registry's recipe, a preset name (imagenet, efficientnet-lite, none) "
        "or a JSON object in the registry's preprocess format",
        TypeConverters.toString,
    )
    outputFormat = Param(Params._dummy(), "outputFormat", "vector (ML vector) or array (array<float>)", TypeConverters.toString)
    handleInvalid = Param(
        Params._dummy(), "handleInvalid",
        "what an undecodable image does: error (fail naming the file or row), skip (drop the row), "
        "keep (null features and the reason in errorCol)",
        TypeConverters.toString,
    )
    errorCol = Param(Params._dummy(), "errorCol", "column for the reason an image failed (handleInvalid=keep only)",
                     TypeConverters.toString)
    maxPixels = Param(Params._dummy(), "maxPixels", "images with more pixels are invalid (checked from the header)",
                      TypeConverters.toInt)
    fastDecode = Param(Params._dummy(), "fastDecode",
                       "decode JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT) when they stay at least as large "
                       "as the resize target: faster decoding, slightly different pixels than full decoding + resize",
                       TypeConverters.toBoolean)
    embedModel = Param(Params._dummy(), "embedModel",
                       "save the (cut) model's bytes with the stage, so a saved pipeline needs no zoo source to load",
                       TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 cut: Any = None, modelSha256: str | None = None, preprocess: str | None = None,
                 outputFormat: str | None = None, handleInvalid: str | None = None, errorCol: str | None = None,
                 batchSize: int | None = None, device: str | None = None, numThreads: int | None = None,
                 maxPixels: int | None = None, shipModel: bool | None = None, embedModel: bool | None = None,
                 fastDecode: bool | None = None):
        super().__init__()
        from zoo._imaging import DEFAULT_MAX_PIXELS

        self._setDefault(inputCol="content", outputCol="features", cut=1, preprocess="", outputFormat="vector",
                         handleInvalid="error", errorCol="error", maxPixels=DEFAULT_MAX_PIXELS, embedModel=False,
                         fastDecode=False)
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "ImageFeaturizer":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "ImageFeaturizer":
        return self._set(outputCol=value)

    def setPreprocess(self, value: str) -> "ImageFeaturizer":
        return self._set(preprocess=value)

    def getPreprocess(self) -> str:
        return self.getOrDefault(self.preprocess)

    def setOutputFormat(self, value: str) -> "ImageFeaturizer":
        return self._set(outputFormat=value)

    def getOutputFormat(self) -> str:
        return self.getOrDefault(self.outputFormat)

    def setHandleInvalid(self, value: str) -> "ImageFeaturizer":
        return self._set(handleInvalid=value)

    def getHandleInvalid(self) -> str:
        return self.getOrDefault(self.handleInvalid)

    def setErrorCol(self, value: str) -> "ImageFeaturizer":
        return self._set(errorCol=value)

    def getErrorCol(self) -> str:
        return self.getOrDefault(self.errorCol)

    def setMaxPixels(self, value: int) -> "ImageFeaturizer":
        return self._set(maxPixels=value)

    def getMaxPixels(self) -> int:
        return self.getOrDefault(self.maxPixels)

    def setFastDecode(self, value: bool) -> "ImageFeaturizer":
        return self._set(fastDecode=value)

    def getFastDecode(self) -> bool:
        return self.getOrDefault(self.fastDecode)

    def setEmbedModel(self, value: bool) -> "ImageFeaturizer":
        return self._set(embedModel=value)

    def getEmbedModel(self) -> bool:
        return self.getOrDefault(self.embedModel)

    def write(self):
        from zoo.stages._embedding import EmbeddingWriter

        return EmbeddingWriter(self)

    @classmethod
    def read(cls):
        from zoo.stages._embedding import EmbeddingReader

        return EmbeddingReader(cls)

    # -- schema ------------------------------------------------------------------------------------
    def _preprocess_value(self):
        text = self.getPreprocess().strip()
        if not text:
            return "registry"
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise StageError(f"{self._describe()}: preprocess is not valid JSON: {exc}") from None
        return text

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        self._check_model_params()
        if self.getOutputFormat() not in ("vector", "array"):
            raise StageError(f"{self._describe()}: outputFormat must be vector or array; got {self.getOutputFormat()!r}")
        if self.getHandleInvalid() not in ("error", "skip", "keep"):
            raise StageError(f"{self._describe()}: handleInvalid must be error, skip or keep; got {self.getHandleInvalid()!r}")
        self._require_column(schema, self.getInputCol(), EXPECTED, accept=lambda t: input_kind(t) is not None)
        self._require_new_column(schema, self.getOutputCol())
        out_type = VectorType() if self.getOutputFormat() == "vector" else T.ArrayType(T.FloatType())
        fields = [*schema.fields, T.StructField(self.getOutputCol(), out_type, True)]
        if self.getHandleInvalid() == "keep":
            if self.getErrorCol() in schema.fieldNames() or self.getErrorCol() == self.getOutputCol():
                raise SchemaError(f"{self._describe()}: errorCol {self.getErrorCol()!r} already exists; choose another")
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    # -- transform ---------------------------------------------------------------------------------
    def _executor_job(self, dataset: DataFrame):
        """What the executors get (picklable; tests unpickle it in a bare interpreter)."""
        from zoo.stages._inference import ImageJob

        spec = self._model_spec(dataset.sparkSession, preprocess=self._preprocess_value())
        kind = input_kind(dataset.schema[self.getInputCol()].dataType)
        name_col = self.getInputCol() if kind in ("path", "struct") else ("path" if "path" in dataset.columns else None)
        return ImageJob(
            spec=spec, input_col=self.getInputCol(), input_kind=kind, batch_size=self.getBatchSize(),
            runtime=self._runtime_options(), handle_invalid=self.getHandleInvalid(), error_col=self.getErrorCol(),
            max_pixels=self.getMaxPixels(), output_col=self.getOutputCol(), stage=self._describe(), name_col=name_col,
            fast_decode=self.getFastDecode(),
        )

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages._inference import featurize_images

        job = self._executor_job(dataset)
        fields = [*dataset.schema.fields, T.StructField(self.getOutputCol(), T.ArrayType(T.FloatType()), True)]
        if self.getHandleInvalid() == "keep":
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        out = dataset.mapInArrow(lambda batches: featurize_images(batches, job), T.StructType(fields))
        if self.getOutputFormat() == "vector":
            out = out.withColumn(self.getOutputCol(), to_vector(dataset.sparkSession, F.col(self.getOutputCol())))
        return out

    @classmethod
    def zoo_examples(cls, spark):
        from zoo import _tiny

        df = spark.createDataFrame(_tiny.image_rows(), "path string, content binary")
        model = _tiny.tiny_model_path()
        pre = json.dumps(_tiny.PREPROCESS)
        bad = spark.createDataFrame([*_tiny.image_rows()[:2], ("file:///examples/bad.jpg", b"not an image")],
                                    "path string, content binary")
        return [
            StageExample(cls(modelName=model, cut=1, preprocess=pre), df),
            StageExample(cls(modelName=model, cut=0, preprocess=pre, outputFormat="array", outputCol="probs"), df),
            StageExample(cls(modelName=model, cut=2, preprocess=pre, handleInvalid="keep", batchSize=2), bad),
            StageExample(cls(modelName=model, cut=1, preprocess=pre, handleInvalid="skip"), bad),
        ]


def VectorType():  # noqa: N802 - reads like a type
    from pyspark.ml.linalg import VectorUDT

    return VectorUDT()
