"""Stages that shape execution rather than values: repartition and cache."""

from __future__ import annotations

from pyspark import StorageLevel, keyword_only
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import param

from zoo.errors import StageError

_FUZZ = T.StructType([T.StructField("k", T.StringType()), T.StructField("v", T.DoubleType())])


def _example_df(spark):
    return spark.createDataFrame([(str(i % 3), float(i)) for i in range(20)], _FUZZ)


class Repartition(ZooTransformer):
    """Repartition by count and/or columns, or ``coalesce`` to fewer partitions without a shuffle."""

    zoo_name = "repartition"
    zoo_rows = "reorder"  # a shuffle
    numPartitions = param("target number of partitions (0: Spark's default)", int)
    partitionCols = param("columns to hash-partition by (empty: round robin)", list[str])
    coalesce = param("reduce partitions without a shuffle (needs numPartitions, no columns)", bool)

    @keyword_only
    def __init__(self, *, numPartitions: int | None = None, partitionCols: list[str] | None = None, coalesce: bool | None = None):
        super().__init__()
        self._setDefault(numPartitions=0, partitionCols=[], coalesce=False)
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        n = self.getNumPartitions()
        if n < 0:
            raise StageError(f"{self._describe()}: numPartitions must be >= 0, got {n}")
        if self.getCoalesce() and (n == 0 or self.getPartitionCols()):
            raise StageError(f"{self._describe()}: coalesce needs numPartitions > 0 and no partitionCols")
        for c in self.getPartitionCols():
            self.require_column(schema, c, "a column to partition by")
        return schema

    def _apply(self, dataset: DataFrame) -> DataFrame:
        n, cols = self.getNumPartitions(), self.getPartitionCols()
        if self.getCoalesce():
            return dataset.coalesce(n)
        if n and cols:
            return dataset.repartition(n, *cols)
        if cols:
            return dataset.repartition(*cols)
        if n:
            return dataset.repartition(n)
        return dataset.repartition(int(dataset.sparkSession.conf.get("spark.sql.shuffle.partitions")))

    @classmethod
    def zoo_examples(cls, spark):
        df = _example_df(spark)
        return [StageExample(cls(numPartitions=3, partitionCols=["k"]), df), StageExample(cls(numPartitions=1, coalesce=True), df)]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ


class Cache(ZooTransformer):
    """Persist the DataFrame at this point of a pipeline; call ``unpersist()`` on the result to release it."""

    zoo_name = "cache"
    storageLevel = param("a pyspark.StorageLevel name, e.g. MEMORY_AND_DISK, MEMORY_ONLY, DISK_ONLY")

    @keyword_only
    def __init__(self, *, storageLevel: str | None = None):
        super().__init__()
        self._setDefault(storageLevel="MEMORY_AND_DISK")
        if self._input_kwargs.get("storageLevel") is not None:
            self._level(self._input_kwargs["storageLevel"])
        self._set(**self._input_kwargs)

    def _level(self, name: str) -> StorageLevel:
        level = getattr(StorageLevel, name, None)
        if not isinstance(level, StorageLevel):
            names = sorted(n for n in dir(StorageLevel) if isinstance(getattr(StorageLevel, n), StorageLevel))
            raise StageError(f"{self._describe()}: unknown storageLevel {name!r}; choose one of {', '.join(names)}")
        return level

    def setStorageLevel(self, value: str) -> "Cache":
        self._level(value)
        return self._set(storageLevel=value)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        self._level(self.getStorageLevel())
        return schema

    def _apply(self, dataset: DataFrame) -> DataFrame:
        return dataset.persist(self._level(self.getStorageLevel()))

    @classmethod
    def zoo_examples(cls, spark):
        return [StageExample(cls(storageLevel="MEMORY_ONLY"), _example_df(spark))]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ
