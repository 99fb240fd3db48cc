"""``detection_crops``: one row per detected object, its pixels cut out, ready for a classifier.

The camera-trap flow (MegaDetector finds the animal, a species classifier names it) as SparkML
stages: ``object_detector`` -> ``detection_crops`` -> ``image_classifier`` or ``image_featurizer``
(+ any SparkML learner), one ``Pipeline`` that saves and loads. Every crop row keeps the image's
other columns (its ``path``, ids, labels) and the detection it came from (``boxCol``: label, score,
corners), so a species prediction always points back to its photo and box.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.object_detector import DETECTION_TYPE
from zoo.stages.params import param
from zoo.stages.workers.image_input import EXPECTED, ImageInput, image_column, input_kind

from zoo.errors import SchemaError, StageError


class DetectionCrops(ZooTransformer, HasInputCol, HasOutputCol):
    """Cut each detection of ``detectionsCol`` out of the image in ``inputCol``: one row per detection,
    the crop as PNG bytes in ``outputCol`` (lossless: no second JPEG generation) and the detection in
    ``boxCol``. ``margin`` widens every box by that fraction of its size on each side (context helps a
    classifier; 0.1 = 10%). Images without detections give no rows; an image the detector could not
    read (a null list) keeps one row with null crop and box, so its error column reaches the end. The
    image column itself is not carried (its bytes would be copied onto every crop); a path is."""

    zoo_name = "detection_crops"
    zoo_rows = "aggregate"  # one row per detection: new rows
    zoo_streaming = True

    detectionsCol = param("the detections column (object_detector's outputCol)")
    boxCol = param("output column: the detection each crop came from")
    margin = param("added on each side of a box, as a fraction of its width and height (>= 0)", float)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, detectionsCol: str | None = None,
                 outputCol: str | None = None, boxCol: str | None = None, margin: float | None = None):
        super().__init__()
        self._setDefault(inputCol="content", detectionsCol="detections", outputCol="crop", boxCol="detection",
                         margin=0.0)
        self._set(**self._input_kwargs)

    def _dropped(self, schema: T.StructType) -> tuple[str, ...]:
        column = image_column(schema, self.getInputCol())
        kind = input_kind(schema[column].dataType)
        return (column,) if kind in ("binary", "struct") else ()

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        if not self.getMargin() >= 0.0:
            raise StageError(f"{self._describe()}: margin must be >= 0; got {self.getMargin()}")
        self.require_column(schema, image_column(schema, self.getInputCol()), EXPECTED,
                            accept=lambda t: input_kind(t) is not None)
        detections = self.require_column(schema, self.getDetectionsCol(), "object_detector's detections")
        if not isinstance(detections.dataType, T.ArrayType) or \
                not isinstance(detections.dataType.elementType, T.StructType) or \
                not {"x0", "y0", "x1", "y1"} <= set(detections.dataType.elementType.fieldNames()):
            raise SchemaError(f"{self._describe()}: column {self.getDetectionsCol()!r} is {detections.dataType.simpleString()}, "
                              "not object_detector's array<struct<label, classIndex, score, x0, y0, x1, y1>>")
        dropped = set(self._dropped(schema)) | {self.getDetectionsCol()}
        kept = [f for f in schema.fields if f.name not in dropped]
        for name in (self.getBoxCol(), self.getOutputCol()):
            if name in [f.name for f in kept]:
                raise SchemaError(f"{self._describe()}: output column {name!r} already exists; choose another")
        if self.getBoxCol() == self.getOutputCol():
            raise SchemaError(f"{self._describe()}: boxCol and outputCol are both {self.getBoxCol()!r}")
        return T.StructType([*kept, T.StructField(self.getBoxCol(), detections.dataType.elementType, True),
                             T.StructField(self.getOutputCol(), T.BinaryType(), True)])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.detections import CropJob, crop_detections

        schema = self.transformSchema(dataset.schema)
        job = CropJob(ImageInput.of(dataset.schema, self.getInputCol()), self.getDetectionsCol(), self.getOutputCol(),
                      self.getBoxCol(), float(self.getMargin()), self._dropped(dataset.schema))
        return dataset.mapInArrow(lambda batches: crop_detections(batches, job), schema)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        rows = [(p, c, [("face", 1, 0.9, 1.0, 2.0, 20.0, 30.0), ("face", 1, 0.7, 0.0, 0.0, 5.0, 5.0)] if i % 2 else [])
                for i, (p, c) in enumerate(tiny.image_rows()[:4])]
        rows.append(("file:///examples/bad.jpg", b"not an image", None))
        df = spark.createDataFrame(rows, T.StructType([T.StructField("path", T.StringType()),
                                                       T.StructField("content", T.BinaryType()),
                                                       T.StructField("detections", DETECTION_TYPE, True)]))
        return [StageExample(cls(margin=0.1), df)]
