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
from zoo.stages.params import param

SCHEMA = T.StructType([T.StructField("x", T.DoubleType())])


def _df(spark):
    return spark.createDataFrame([(float(i),) for i in range(6)], SCHEMA)


class _Scale(ZooTransformer):
    """Multiply x by factor into y (the correct base the broken variants start from)."""

    zoo_name = "scale_ok"
    zoo_streaming = True
    factor = param("multiplier", float)

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
    mean = param("the learned mean of x", float)

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


class CrashesOnNull(_Scale):
    """Multiplies in a Python UDF that cannot take a null: a crash on every partitioning alike."""

    zoo_name = "broken_null"

    def _apply(self, dataset):
        factor = self.getFactor()
        times = F.udf(lambda x: x * factor, T.DoubleType())  # TypeError on None: the bug under test
        return dataset.withColumn("y", times("x"))


class DropsNulls(_Scale):
    """Silently drops the rows whose x is null."""

    zoo_name = "broken_drops_rows"

    def _apply(self, dataset):
        return super()._apply(dataset).where(F.col("x").isNotNull())


class DuplicatesRows(_Scale):
    """Emits every row twice."""

    zoo_name = "broken_duplicates_rows"

    def _apply(self, dataset):
        out = super()._apply(dataset)
        return out.unionByName(out)


class Reorders(_Scale):
    """Sorts its output (descending), without declaring that it reorders rows."""

    zoo_name = "broken_reorders_rows"
    zoo_streaming = False

    def _apply(self, dataset):
        return super()._apply(dataset).orderBy(F.col("x").desc())


class DeclaredFilter(_Scale):
    """Drops null rows and says so (zoo_rows = 'filter'): correct, the kit must not complain."""

    zoo_name = "filter_ok"
    zoo_rows = "filter"

    def _apply(self, dataset):
        return super()._apply(dataset).where(F.col("x").isNotNull())


_SEEN: list = []  # one list for every instance: the bug under test


class SharesMutableDefault(_Scale):
    """Keeps the x values it has seen in a list param whose default is one module-level list, and
    appends to it in transform."""

    zoo_name = "broken_shared_default"
    seen = param("x values seen so far", TypeConverters.toList)  # keeps the very list it is given

    @keyword_only
    def __init__(self, *, factor: float | None = None, seen: list | None = None):
        super(_Scale, self).__init__()
        self._setDefault(factor=1.0, seen=_SEEN)
        self._set(**self._input_kwargs)

    def setSeen(self, value):
        return self._set(seen=value)

    def getSeen(self):
        return self.getOrDefault(self.seen)

    def _apply(self, dataset):
        self.getSeen().append(1.0)
        return super()._apply(dataset)


class NeedsAnArgument(_Scale):
    """Cannot be built without its factor."""

    zoo_name = "broken_constructor"

    def __init__(self, factor: float):
        super(_Scale, self).__init__()
        self._setDefault(factor=factor)


class ForgetsItsOffset(MeanCenter):
    """Its model keeps the learned offset in a plain attribute, which SparkML persistence does not save."""

    zoo_name = "broken_attribute"

    def _fit_validated(self, dataset):
        model = OffsetModel()
        model.offset = float(dataset.agg(F.avg("x")).first()[0] or 0.0)
        return model


class OffsetModel(MeanCenterModel):
    """Subtracts ``self.offset`` (a plain attribute, not a Param)."""

    zoo_name = "broken_attribute_model"

    def __init__(self, *, mean: float | None = None):
        super().__init__()
        self.offset = 0.0

    def _apply(self, dataset):
        return dataset.withColumn("y", F.col("x") - F.lit(self.offset))


class NullabilityLies(_Scale):
    """Declares y as never null, but y is null wherever x is."""

    zoo_name = "broken_nullability"

    def transformSchema(self, schema):
        out = super().transformSchema(schema)
        return T.StructType([*out.fields[:-1], T.StructField("y", T.DoubleType(), nullable=False)])


# -- defect classes the kit catches by property (issue 35): a second set, unlike the first ------------
class SessionDay(_Scale):
    """A "UTC day" made with to_date(timestamp): it follows the session time zone."""

    zoo_name = "broken_session_day"

    def _apply(self, dataset):
        moment = F.timestamp_seconds((F.col("x") * F.lit(50000.0)).cast("long"))
        return dataset.withColumn("y", F.dayofmonth(F.to_date(moment)).cast("double"))


class LocaleLabel(_Scale):
    """Labels rows by lower-casing in the JVM (StringUtils.lowerCase: the JVM's default locale)."""

    zoo_name = "broken_locale_label"

    def transformSchema(self, schema):
        self.require_column(schema, "x", "a double")
        return T.StructType([*schema.fields, T.StructField("y", T.StringType())])

    def _apply(self, dataset):
        label = F.concat(F.lit("ITEM "), F.col("x").cast("int").cast("string"))
        return dataset.withColumn("y", F.call_function("reflect", F.lit("org.apache.commons.lang3.StringUtils"),
                                                       F.lit("lowerCase"), label))


class ModelWritesAnotherColumn(MeanCenter):
    """Its estimator promises y, its model (built without the estimator's Params) writes y_centered."""

    zoo_name = "broken_model_column"

    def _fit_validated(self, dataset):
        return RenamedModel(mean=float(dataset.agg(F.avg("x")).first()[0] or 0.0))


class RenamedModel(MeanCenterModel):
    """Writes y_centered (and says so: its own schema is consistent, only the estimator's promise is not)."""

    zoo_name = "broken_model_column_model"

    def transformSchema(self, schema):
        return T.StructType([*schema.fields, T.StructField("y_centered", T.DoubleType())])

    def _apply(self, dataset):
        return dataset.withColumn("y_centered", F.col("x") - F.lit(self.getMean()))


class FrameMinMax(_Scale):
    """Scales x to [0, 1] with the min and max of the frame it transforms: a row alone gives 0 or null."""

    zoo_name = "broken_frame_minmax"

    def _apply(self, dataset):
        from pyspark.sql import Window

        everything = Window.partitionBy()
        low, high = F.min("x").over(everything), F.max("x").over(everything)
        return dataset.withColumn("y", (F.col("x") - low) / (high - low))


class FitIndexesFirstRow(MeanCenter):
    """Takes the first row's x as its centre: IndexError on an empty (or filtered-out) frame."""

    zoo_name = "broken_fit_empty"

    def _fit_validated(self, dataset):
        return MeanCenterModel(mean=float(dataset.collect()[0]["x"]))


class OverwritesOutput(_Scale):
    """Never checks that y is new: an input's own y is silently replaced."""

    zoo_name = "broken_overwrites"

    def transformSchema(self, schema):
        self._require_column(schema, "x", "a double column", accept=lambda t: isinstance(t, T.DoubleType))
        return T.StructType([*[f for f in schema.fields if f.name != "y"], T.StructField("y", T.DoubleType())])


class AcceptsAnyNumber(_Scale):
    """Its schema accepts any number, its Python UDF multiplies a float: TypeError on a Decimal."""

    zoo_name = "broken_decimal"

    def transformSchema(self, schema):
        from zoo.stages.base import NUMERIC_TYPES

        self._require_column(schema, "x", "a number", accept=lambda t: isinstance(t, NUMERIC_TYPES))
        self._require_new_column(schema, "y")
        return T.StructType([*schema.fields, T.StructField("y", T.DoubleType())])

    def _apply(self, dataset):
        factor = self.getFactor()
        times = F.udf(lambda x: None if x is None else x * factor, T.DoubleType())
        return dataset.withColumn("y", times("x"))


class UnpersistsItsInput(MeanCenter):
    """Persists its input for two passes, then unpersists it: the caller's own cache is gone."""

    zoo_name = "broken_unpersist"

    def _fit_validated(self, dataset):
        dataset.persist()
        mean = dataset.agg(F.avg("x")).first()[0]
        dataset.count()
        dataset.unpersist()
        return MeanCenterModel(mean=float(mean) if mean is not None else 0.0)


class NaNDefault(_Scale):
    """Correct: a param whose default is NaN (as Imputer's missingValue). No check may call it unequal."""

    zoo_name = "nan_default_ok"
    missing = param("the value that stands for a missing x", float)

    @keyword_only
    def __init__(self, *, factor: float | None = None, missing: float | None = None):
        super(_Scale, self).__init__()
        self._setDefault(factor=1.0, missing=float("nan"))
        self._set(**self._input_kwargs)


class DividesByZero(_Scale):
    """Divides by zero in Spark SQL: under ANSI mode the JVM raises, and the kit must name that error."""

    zoo_name = "broken_jvm_error"

    def _apply(self, dataset):
        return dataset.withColumn("y", F.col("x") / F.lit(0))
