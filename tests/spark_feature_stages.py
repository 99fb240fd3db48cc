"""Eight of Spark's own ``pyspark.ml.feature`` stages wrapped as zoo stages, exactly as
docs/plugins.md ("Wrapping Spark's stages") tells a plugin author to: correct third-party stages
on which the conformance kit must raise no false alarm.

An importable module (not inside a test) because loading a saved stage finds its class by module path.
"""

from __future__ import annotations

from pyspark.ml.feature import (
    Bucketizer,
    Imputer,
    MinMaxScaler,
    OneHotEncoder,
    StandardScaler,
    StringIndexer,
    Tokenizer,
    VectorAssembler,
)
from pyspark.ml.linalg import Vectors
from pyspark.sql import types as T

from zoo.stages import StageExample
from zoo.stages.jvm import JvmStage

_CATEGORIES = T.StructType([T.StructField("category", T.StringType())])
_READINGS = T.StructType([T.StructField("a", T.DoubleType()), T.StructField("b", T.DoubleType())])


def _categories(spark, values):
    return spark.createDataFrame([(v,) for v in values], _CATEGORIES)


def _readings(spark):
    return spark.createDataFrame([(1.0, 2.0), (3.5, -1.0), (0.0, 0.25), (7.0, 4.0)], _READINGS)


def _vectors(spark):
    rows = [(Vectors.dense([1.0, 10.0]),), (Vectors.dense([2.0, 30.0]),), (Vectors.dense([4.0, 20.0]),)]
    return spark.createDataFrame(rows, ["features"])


class CategoryIndexer(JvmStage, StringIndexer):
    """Spark's StringIndexer: category labels to indices, most frequent first."""

    zoo_name = "spark_string_indexer"

    @classmethod
    def zoo_examples(cls, spark):
        df = _categories(spark, ["cat", "dog", "cat", "bird", "cat", "dog"])
        return [StageExample(cls(inputCol="category", outputCol="category_index"), df, df),
                StageExample(cls(inputCol="category", outputCol="category_index", handleInvalid="keep",
                                 stringOrderType="alphabetAsc"), _categories(spark, ["cat", "fish"]), df)]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _CATEGORIES


class OneHot(JvmStage, OneHotEncoder):
    """Spark's OneHotEncoder: category indices to sparse one-hot vectors."""

    zoo_name = "spark_one_hot"

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([(0.0,), (1.0,), (2.0,), (1.0,)], ["index"])
        return [StageExample(cls(inputCols=["index"], outputCols=["index_vector"]), df, df)]


class Assembler(JvmStage, VectorAssembler):
    """Spark's VectorAssembler: numeric columns into one vector."""

    zoo_name = "spark_vector_assembler"

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(inputCols=["a", "b"], outputCol="features"), _readings(spark)),
                StageExample(cls(inputCols=["a", "b"], outputCol="features", handleInvalid="skip"), _readings(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _READINGS


class Standardizer(JvmStage, StandardScaler):
    """Spark's StandardScaler: vectors scaled to unit standard deviation."""

    zoo_name = "spark_standard_scaler"

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(inputCol="features", outputCol="scaled", withMean=True), _vectors(spark), _vectors(spark))]


class Filler(JvmStage, Imputer):
    """Spark's Imputer: missing readings (NaN or null) filled with the column mean."""

    zoo_name = "spark_imputer"

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([(1.0, 2.0), (float("nan"), 4.0), (3.0, None), (5.0, 8.0)], _READINGS)
        return [StageExample(cls(inputCols=["a", "b"], outputCols=["a_filled", "b_filled"]), df, df)]


class Buckets(JvmStage, Bucketizer):
    """Spark's Bucketizer: readings into fixed ranges."""

    zoo_name = "spark_bucketizer"

    @classmethod
    def zoo_examples(cls, spark):
        splits = [float("-inf"), 0.0, 2.0, float("inf")]
        return [StageExample(cls(splits=splits, inputCol="a", outputCol="a_bucket"), _readings(spark)),
                StageExample(cls(splits=splits, inputCol="a", outputCol="a_bucket", handleInvalid="keep"),
                             _readings(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _READINGS


class Words(JvmStage, Tokenizer):
    """Spark's Tokenizer: text to lower-case words."""

    zoo_name = "spark_tokenizer"

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([("The quick Fox",), ("jumps",), ("",)], ["text"])
        return [StageExample(cls(inputCol="text", outputCol="words"), df)]


class Ranges(JvmStage, MinMaxScaler):
    """Spark's MinMaxScaler: vectors rescaled into [0, 1] with the fitted minimum and maximum."""

    zoo_name = "spark_min_max_scaler"

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(inputCol="features", outputCol="scaled"), _vectors(spark), _vectors(spark))]


STAGES = [CategoryIndexer, OneHot, Assembler, Standardizer, Filler, Buckets, Words, Ranges]


# -- wrappers with an author's mistake: the kit must still see each ------------------------------
class ForgetsTheMixin(StringIndexer):
    """StringIndexer registered without JvmStage: Spark cannot find a Scala class for it on load."""

    zoo_name = "bad_forgets_the_mixin"
    zoo_rows = "preserve"

    @classmethod
    def zoo_examples(cls, spark):
        df = _categories(spark, ["cat", "dog", "cat"])
        return [StageExample(cls(inputCol="category", outputCol="category_index"), df, df)]

    @classmethod
    def zoo_fuzz_schema(cls):
        return None


class ClaimsToKeepRows(JvmStage, VectorAssembler):
    """VectorAssembler whose wrapper declares every row kept while it skips rows with nulls."""

    zoo_name = "bad_claims_to_keep_rows"

    def zoo_row_policy(self):
        return "preserve"

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([(1.0, 2.0), (None, 1.0), (3.0, 4.0)], _READINGS)
        return [StageExample(cls(inputCols=["a", "b"], outputCol="features", handleInvalid="skip"), df)]


class ThresholdNotAParam(JvmStage, Bucketizer):
    """Bucketizer whose wrapper keeps its cut-off in a plain attribute: save() does not write it."""

    zoo_name = "bad_threshold_not_a_param"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lowest = None

    def _transform(self, dataset):
        from pyspark.sql import functions as F

        out, lowest = super()._transform(dataset), getattr(self, "lowest", None)
        column = self.getOutputCol()
        return out if lowest is None else out.withColumn(
            column, F.when(F.col("a") < F.lit(lowest), F.lit(-1.0)).otherwise(F.col(column)))

    @classmethod
    def zoo_examples(cls, spark):
        stage = cls(splits=[float("-inf"), 0.0, 2.0, float("inf")], inputCol="a", outputCol="a_bucket")
        stage.lowest = 1.0
        return [StageExample(stage, _readings(spark))]


class LocalDay(JvmStage, Tokenizer):
    """Tokenizer whose wrapper adds the day a row was seen, in the session's time zone."""

    zoo_name = "bad_local_day"

    def _transform(self, dataset):
        from pyspark.sql import functions as F

        return super()._transform(dataset).withColumn("seen_day", F.to_date(F.col("seen")))

    @classmethod
    def zoo_examples(cls, spark):
        import datetime as dt

        df = spark.createDataFrame([("a b", dt.datetime(2024, 3, 1, 23, 30)), ("c", dt.datetime(2024, 3, 2, 1, 0))],
                                   "text string, seen timestamp")
        return [StageExample(cls(inputCol="text", outputCol="words"), df)]


BROKEN = [ForgetsTheMixin, ClaimsToKeepRows, ThresholdNotAParam, LocalDay]
