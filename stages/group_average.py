"""``group_average``: average a vector or array column over a key (test-time augmentation, camera bursts)."""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer, is_numeric
from zoo.stages.params import HasAllowMixedProvenance, param

from zoo import lineage
from zoo.errors import StageError
from zoo.runtime.jvm_functions import to_vector

EXPECTED = "a vector or array<numeric> column"


def _averageable(t: T.DataType) -> bool:
    return isinstance(t, VectorUDT) or (isinstance(t, T.ArrayType) and is_numeric(t.elementType))


class GroupAverage(ZooTransformer, HasInputCol, HasOutputCol, HasAllowMixedProvenance):
    """Average ``inputCol`` (vector or array) over the rows sharing ``keyCol`` into the vector ``outputCol``.

    ``mode=join`` (default) keeps every row and adds its group's average (so a flipped copy and
    its original share one prediction); ``mode=reduce`` returns one row per key: ``keyCol`` and
    ``outputCol``. Null inputs are left out of the average; a group of only nulls averages to
    null. Null keys form their own group. Rows whose features were made by different models, cuts or
    preprocessing (a union of two featurizations) are refused unless ``allowMixedProvenance``.
    Floating-point sums depend on the order rows arrive in, so averages of more than two values may
    differ in the last bit between runs with different partitioning.
    """

    zoo_name = "group_average"
    zoo_independent_rows = False  # each row gets its group's average: rows of a group depend on each other
    keyCol = param("the column whose equal values form a group (photo id, burst id)")
    mode = param("join (every row gets its group's average) or reduce (one row per key)")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, keyCol: str | None = None, outputCol: str | None = None,
                 mode: str | None = None, allowMixedProvenance: bool | None = None):
        super().__init__()
        self._setDefault(inputCol="probability", keyCol="id", outputCol="average", mode="join")
        self._set(**self._input_kwargs)

    def zoo_row_policy(self) -> str:
        """join: every row once, in the order a join leaves them; reduce: one row per key."""
        return "aggregate" if self.getMode() == "reduce" else "reorder"

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        if self.getMode() not in ("join", "reduce"):
            raise StageError(f"{self._describe()}: mode must be join or reduce; got {self.getMode()!r}")
        self.require_column(schema, self.getInputCol(), EXPECTED, accept=_averageable)
        key = self.require_column(schema, self.getKeyCol(), "a column to group by (photo or burst id)",
                                   accept=lambda t: not isinstance(t, (T.MapType, VectorUDT, T.BinaryType)))
        self.require_new_column(schema, self.getOutputCol())
        out = T.StructField(self.getOutputCol(), VectorUDT(), True)
        return T.StructType([key, out] if self.getMode() == "reduce" else [*schema.fields, out])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        self._refuse_mixed_rows(dataset, [self.getInputCol()])
        out = self._averaged(dataset)
        made = lineage.of(dataset, self.getInputCol())
        return lineage.attach(out, self.getOutputCol(), {**made, "averaged_by": self.getKeyCol()}) if made else out

    def _averaged(self, dataset: DataFrame) -> DataFrame:
        col = F.col(f"`{self.getInputCol()}`")
        if isinstance(dataset.schema[self.getInputCol()].dataType, T.ArrayType):
            col = to_vector(dataset.sparkSession, col)
        key, tmp = self.getKeyCol(), "__zoo_group_key"
        sums = (dataset.where(col.isNotNull())
                .groupBy(F.col(f"`{key}`").alias(tmp))
                .agg(Summarizer.mean(col).alias(self.getOutputCol())))
        if self.getMode() == "reduce":
            keys = dataset.select(F.col(f"`{key}`").alias(tmp)).distinct()
            out = keys.join(sums, keys[tmp].eqNullSafe(sums[tmp]), "left").select(keys[tmp].alias(key), sums[self.getOutputCol()])
            return out
        return dataset.join(sums, dataset[f"`{key}`"].eqNullSafe(sums[tmp]), "left").drop(tmp)

    @classmethod
    def zoo_examples(cls, spark):
        from pyspark.ml.linalg import Vectors

        vectors = spark.createDataFrame(
            [("a", Vectors.dense([0.2, 0.8])), ("a", Vectors.dense([0.4, 0.6])), ("b", Vectors.dense([0.9, 0.1])),
             ("c", None), (None, Vectors.dense([0.5, 0.5]))], ["photo", "probability"])
        arrays = spark.createDataFrame([(1, [1.0, 2.0, 3.0]), (1, [3.0, 2.0, 1.0]), (2, [0.5, 0.5, 0.5])],
                                       "burst int, features array<float>")
        return [
            StageExample(cls(inputCol="probability", keyCol="photo", outputCol="avg"), vectors),
            StageExample(cls(inputCol="features", keyCol="burst", outputCol="avg", mode="reduce"), arrays),
        ]
