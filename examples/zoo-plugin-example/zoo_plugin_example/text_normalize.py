"""``text_normalize``: lower-case, collapse whitespace and trim a string column."""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import functions as F
from pyspark.sql import types as T

from zoo.stages import StageExample, ZooTransformer


class TextNormalize(ZooTransformer, HasInputCol, HasOutputCol):
    """Normalise free text for hashing or matching: optional lower-casing, whitespace collapsed, trimmed."""

    zoo_name = "text_normalize"
    lowercase = Param(Params._dummy(), "lowercase", "lower-case the text", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, lowercase: bool | None = None):
        super().__init__()
        self._setDefault(inputCol="text", outputCol="text_normalized", lowercase=True)
        self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "TextNormalize":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "TextNormalize":
        return self._set(outputCol=value)

    def setLowercase(self, value: bool) -> "TextNormalize":
        return self._set(lowercase=value)

    def getLowercase(self) -> bool:
        return self.getOrDefault(self.lowercase)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        self._require_column(schema, self.getInputCol(), "a string column", accept=lambda t: isinstance(t, T.StringType))
        self._require_new_column(schema, self.getOutputCol())
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), T.StringType(), True)])

    def _apply(self, dataset):
        text = F.col(f"`{self.getInputCol()}`")
        if self.getLowercase():
            text = F.lower(text)
        text = F.trim(F.regexp_replace(text, r"\s+", " "))
        return dataset.withColumn(self.getOutputCol(), text)

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([("  Snow   LEOPARD\tspotted ",), ("Ünïcode  TEXT",), (None,)], "text string")
        return [StageExample(cls(), df), StageExample(cls(inputCol="text", outputCol="t", lowercase=False), df)]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("text", T.StringType())])
