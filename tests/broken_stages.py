"""Deliberately defective stages: the conformance kit must report each defect.

They live in an importable module (not inside a test function) because SparkML persistence
reloads classes by module path.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.param import TypeConverters
from pyspark.ml.util import DefaultParamsWriter
from pyspark.sql import functions as F
from pyspark.sql import types as T

from zoo.stages import StageExample, ZooEstimator, ZooModel, ZooTransformer
from zoo.stages._params import param

SCHEMA = T.StructType([T.StructField("x", T.DoubleType())])


def _df(spark):
    return spark.createDataFrame([(float(i),) for i in range(6)], SCHEMA)


class _Scale(ZooTransformer):
    """Multiply x by factor into y (the correct base the broken variants start from)."""

    zoo_name = "scale_ok"
    zoo_streaming = True
    factor = param("factor", "multiplier", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, factor: float | None = None):
        super().__init__()
        self._setDefault(factor=1.0)
        self._set(**self._input_kwargs)

    def setFactor(self, value: float):
        return self._set(factor=value)

    def getFactor(self) -> float:
        return self.getOrDefault(self.factor)

    def transformSchema(self, schema):
        self._require_column(schema, "x", "a double column", accept=lambda t: isinstance(t, T.DoubleType))
        self._require_new_column(schema, "y")
        return T.StructType([*schema.fields, T.StructField("y", T.DoubleType())])

    def _apply(self, dataset):
        return dataset.withColumn("y", F.col("x") * F.lit(self.getFactor()))

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(factor=3.0), _df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return SCHEMA


class _ForgetfulWriter(DefaultParamsWriter):
    def saveImpl(self, path):
        kept = {p: v for p, v in self.instance._paramMap.items() if p.name != "factor"}
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, paramMap={p.name: v for p, v in kept.items()})


class LosesParamOnSave(_Scale):
    """Forgets `factor` when saved."""

    zoo_name = "broken_persistence"

    def write(self):
        return _ForgetfulWriter(self)


class DependsOnRowOrder(_Scale):
    """Numbers rows by their physical position, so its output depends on partitioning."""

    zoo_name = "broken_order"

    def _apply(self, dataset):
        return dataset.withColumn("y", F.monotonically_increasing_id().cast("double"))


class LyingSchema(_Scale):
    """Declares y as double but produces a string."""

    zoo_name = "broken_schema"

    def _apply(self, dataset):
        return dataset.withColumn("y", F.col("x").cast("string"))


class CrashesOnEmptyPartition(_Scale):
    """Reads the first batch of each partition unconditionally."""

    zoo_name = "broken_empty"

    def _apply(self, dataset):
        def first_batch_scaled(batches):
            first = next(batches)  # StopIteration on an empty partition: the bug under test
            yield first.assign(y=first["x"] * 2.0)
            for batch in batches:
                yield batch.assign(y=batch["x"] * 2.0)

        return dataset.mapInPandas(first_batch_scaled, "x double, y double")


class NoExamples(_Scale):
    """Provides no examples."""

    zoo_name = "broken_meta"

    @classmethod
    def zoo_examples(cls, spark):
        return []


class LazyValidation(_Scale):
    """Never checks its input, so a missing column surfaces as Spark's own error."""

    zoo_name = "broken_validation"

    def transformSchema(self, schema):
        return T.StructType([*schema.fields, T.StructField("y", T.DoubleType())])


class MeanCenter(ZooEstimator):
    """Learns the mean of x; its model subtracts it into y. A correct estimator for the kit's estimator paths."""

    zoo_name = "mean_center"

    def transformSchema(self, schema):
        return _Scale().transformSchema(schema)

    def _fit_validated(self, dataset):
        mean = dataset.agg(F.avg("x")).first()[0]
        return MeanCenterModel(mean=float(mean) if mean is not None else 0.0)

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(), _df(spark), fit_df=_df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return SCHEMA


class MeanCenterModel(ZooModel):
    """Subtracts the learned mean of x into y."""

    zoo_name = "mean_center_model"
    mean = param("mean", "the learned mean of x", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, mean: float | None = None):
        super().__init__()
        self._setDefault(mean=0.0)
        self._set(**self._input_kwargs)

    def setMean(self, value: float):
        return self._set(mean=value)

    def getMean(self) -> float:
        return self.getOrDefault(self.mean)

    def transformSchema(self, schema):
        return _Scale().transformSchema(schema)

    def _apply(self, dataset):
        return dataset.withColumn("y", F.col("x") - F.lit(self.getMean()))


class RandomFit(MeanCenter):
    """Fits on a random sample, so fitting twice gives different models."""

    zoo_name = "broken_estimator"

    def _fit_validated(self, dataset):
        import random

        return MeanCenterModel(mean=random.random())


class ClaimsStreamingButSorts(_Scale):
    """Declares streaming support but sorts, which a streaming query refuses."""

    zoo_name = "broken_streaming_sort"

    def _apply(self, dataset):
        return super()._apply(dataset).orderBy("x")


class StreamsDifferently(_Scale):
    """Computes something else on a stream than in batch."""

    zoo_name = "broken_streaming_output"

    def _apply(self, dataset):
        factor = self.getFactor() * (2.0 if dataset.isStreaming else 1.0)
        return dataset.withColumn("y", F.col("x") * F.lit(factor))
