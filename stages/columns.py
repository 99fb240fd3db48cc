"""Column housekeeping stages: select, drop, rename."""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import param

from zoo.errors import SchemaError

_FUZZ = T.StructType([T.StructField("a", T.DoubleType()), T.StructField("b", T.StringType()), T.StructField("c", T.LongType())])


def _example_df(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([(1.0, "x", 1), (float("nan"), "ü", 2), (None, None, 3)], _FUZZ)


class _ColumnsStage(ZooTransformer):
    """Shared by the stages that take a list of column names."""

    cols = param("the columns to act on, in order", list[str])

    @keyword_only
    def __init__(self, *, cols: list[str] | None = None):
        super().__init__()
        self._setDefault(cols=[])
        self._set(**self._input_kwargs)


class Select(_ColumnsStage):
    """Keep only the named columns, in the given order (like ``DataFrame.select``)."""

    zoo_name = "select"
    zoo_streaming = True  # checked by the kit's streaming check

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        for c in self.getCols():
            self.require_column(schema, c, "a column to select")
        return T.StructType([schema[c] for c in self.getCols()])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        return dataset.select(*[F.col(f"`{c}`") for c in self.getCols()])

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(cols=["c", "a"]), _example_df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ


class Drop(_ColumnsStage):
    """Remove the named columns; unlike ``DataFrame.drop`` a missing column is an error, not a no-op."""

    zoo_name = "drop"
    zoo_streaming = True  # checked by the kit's streaming check

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        for c in self.getCols():
            self.require_column(schema, c, "a column to drop")
        return T.StructType([f for f in schema.fields if f.name not in set(self.getCols())])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        return dataset.drop(*self.getCols())

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(cols=["b"]), _example_df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ


class Rename(ZooTransformer):
    """Rename columns: ``mapping`` is {old name: new name}; other columns pass through."""

    zoo_name = "rename"
    zoo_streaming = True  # checked by the kit's streaming check
    mapping = param("{old column name: new column name}", dict[str, str])

    @keyword_only
    def __init__(self, *, mapping: dict[str, str] | None = None):
        super().__init__()
        self._setDefault(mapping={})
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        mapping = self.getMapping()
        for old in mapping:
            self.require_column(schema, old, "a column to rename")
        names = [mapping.get(f.name, f.name) for f in schema.fields]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise SchemaError(f"{self._describe()}: renaming would create duplicate columns {clashes}")
        return T.StructType([T.StructField(mapping.get(f.name, f.name), f.dataType, f.nullable, f.metadata) for f in schema.fields])

    def _apply(self, dataset: DataFrame) -> DataFrame:
        mapping = self.getMapping()
        return dataset.select(*[F.col(f"`{c}`").alias(mapping.get(c, c)) for c in dataset.columns])

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(mapping={"a": "score", "b": "label"}), _example_df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ
