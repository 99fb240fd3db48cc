"""``image_featurizer``: images in, deep features out, preprocessed exactly as the model's authors did.

The driver resolves ``modelName`` (and ``cut``) to sha256s once (:func:`zoo.runtime.models.prepare`);
executors get the model from their node's zoo cache, the driver's shipped file, or its sources
(:func:`zoo.runtime.models.obtain`), and keep one ONNX Runtime session per Python worker.
Decoding and preprocessing run in native OpenCV inside ``mapInArrow``
(:func:`zoo.stages.workers.images.featurize_images`), in inner batches of ``batchSize`` rows.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import HasErrorCol, HasHandleInvalid, HasImageInput, HasModel, param
from zoo.stages.persistence import HasEmbeddedModel
from zoo.stages.workers.image_input import EXPECTED, ImageInput, image_column, input_kind

from zoo.errors import SchemaError, StageError
from zoo.lineage import attach, record
from zoo.runtime.jvm_functions import to_vector

OUTPUT_FORMATS = ("vector", "array")


class ImageFeaturizer(ZooTransformer, HasModel, HasImageInput, HasEmbeddedModel, HasInputCol, HasOutputCol,
                      HasHandleInvalid, HasErrorCol):
    """Featurize images with a zoo model cut ``cut`` layers from its head.

    ``inputCol`` holds encoded image bytes (``binaryFile``), an image struct (Spark's ``image``
    source, BGR) or a file path. ``outputFormat`` is ``vector`` (an ML vector, default) or
    ``array`` (array<float>). ``handleInvalid`` decides what an undecodable image does:
    ``error`` (fail, naming the file or row), ``skip`` (drop the row) or ``keep`` (null features,
    the reason in ``errorCol``).
    """

    zoo_name = "image_featurizer"
    zoo_streaming = True  # checked by the kit's streaming check

    outputFormat = param("vector (ML vector) or array (array<float>)")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 cut: Any = None, modelSha256: str | None = None, preprocess: str | None = None,
                 outputFormat: str | None = None, handleInvalid: str | None = None, errorCol: str | None = None,
                 batchSize: int | None = None, device: str | None = None, numThreads: int | None = None,
                 graphOptimization: str | None = None, executionProviders: list | None = None,
                 maxPixels: int | None = None, shipModel: bool | None = None, embedModel: bool | None = None,
                 fastDecode: bool | None = None, decode: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", outputCol="features", cut=1, outputFormat="vector")
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    # -- schema ------------------------------------------------------------------------------------
    def transformSchema(self, schema: T.StructType) -> T.StructType:
        self._check_model_params()
        if self.getOutputFormat() not in OUTPUT_FORMATS:
            raise StageError(f"{self._describe()}: outputFormat must be vector or array; got {self.getOutputFormat()!r}")
        keep = self._check_handle_invalid() == "keep"
        self.require_column(schema, image_column(schema, self.getInputCol()), EXPECTED, accept=lambda t: input_kind(t) is not None)
        self.require_new_column(schema, self.getOutputCol())
        out_type = VectorUDT() if self.getOutputFormat() == "vector" else T.ArrayType(T.FloatType())
        fields = [*schema.fields, T.StructField(self.getOutputCol(), out_type, True)]
        if keep:
            if self.getErrorCol() in schema.fieldNames() or self.getErrorCol() == self.getOutputCol():
                raise SchemaError(f"{self._describe()}: errorCol {self.getErrorCol()!r} already exists; choose another")
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    # -- transform ---------------------------------------------------------------------------------
    def _executor_job(self, dataset: DataFrame):
        """What the executors get (picklable; tests unpickle it in a bare interpreter)."""
        from zoo.stages.workers.images import ImageJob

        wanted = self._preprocess_value()
        spec = self._model_spec(dataset.sparkSession, preprocess=wanted)
        if spec.preprocess is None and wanted == "registry":
            # a model's pixels are its authors' recipe: guessing one gives features (and class names) that look
            # fine and mean nothing (MobileNet v2 on raw 0-255 pixels: top-1 0.00 on the shared photos)
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} has no preprocessing recipe (a file, "
                             "a bare sha256 or a registry entry without one): set preprocess to a preset (imagenet, "
                             "efficientnet-lite), a JSON recipe, or 'none' for a plain resize to the input size with "
                             "0-255 pixels; `zoo add FILE --preprocess ...` records one for good")
        return ImageJob(
            spec=spec, image=ImageInput.of(dataset.schema, self.getInputCol(), self.getMaxPixels()),
            batch_size=self.getBatchSize(), runtime=self._runtime_options(), handle_invalid=self.getHandleInvalid(),
            error_col=self.getErrorCol(), output_col=self.getOutputCol(), stage=self._describe(),
            fast_decode=self.getFastDecode(), decode=self._check_decode(),
        )

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.images import featurize_images

        job = self._executor_job(dataset)
        fields = [*dataset.schema.fields, T.StructField(self.getOutputCol(), T.ArrayType(T.FloatType()), True)]
        if self.getHandleInvalid() == "keep":
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        out = dataset.mapInArrow(lambda batches: featurize_images(batches, job), T.StructType(fields))
        if self.getOutputFormat() == "vector":
            out = out.withColumn(self.getOutputCol(), to_vector(dataset.sparkSession, F.col(self.getOutputCol())))
        return attach(out, self.getOutputCol(), self._provenance(job))

    def _provenance(self, job) -> dict[str, Any]:
        """What made the output column (zoo.lineage): the model and cut, the preprocessing, decoding."""
        import cv2

        return record(self.zoo_name, job.spec, width=job.spec.features, device=self.getDevice(),
                      fast_decode=self.getFastDecode(), decode=self.getDecode(), opencv=cv2.__version__)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
        model = tiny.tiny_model_path()
        pre = json.dumps(tiny.PREPROCESS)
        bad = spark.createDataFrame([*tiny.image_rows()[:2], ("file:///examples/bad.jpg", b"not an image")],
                                    "path string, content binary")
        return [
            StageExample(cls(modelName=model, cut=1, preprocess=pre), df),
            StageExample(cls(modelName=model, cut=0, preprocess=pre, outputFormat="array", outputCol="probs"), df),
            StageExample(cls(modelName=model, cut=2, preprocess=pre, handleInvalid="keep", batchSize=2), bad),
            StageExample(cls(modelName=model, cut=1, preprocess=pre, handleInvalid="skip"), bad),
        ]
