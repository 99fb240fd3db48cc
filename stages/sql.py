"""The ``sql`` stage: a SQL statement over the input DataFrame, which it calls ``__THIS__``."""

from __future__ import annotations

import re
import uuid

from pyspark import keyword_only
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import param

from zoo.errors import SchemaError, StageError


class SQL(ZooTransformer):
    """Run ``SELECT ... FROM __THIS__ ...`` on the input (like SparkML's SQLTransformer).

    The statement is checked when set (it must mention ``__THIS__``) and analysed against the input
    schema in ``transformSchema``, so a bad statement fails before any job runs, naming the stage.
    """

    zoo_name = "sql"
    zoo_rows = "aggregate"  # any statement: filters, joins, GROUP BY
    zoo_replaces_output = True  # the statement names its output columns, an input's own names included
    zoo_streaming = True  # checked by the kit's streaming check
    statement = param("SQL statement; the input DataFrame is the table __THIS__")

    @keyword_only
    def __init__(self, *, statement: str | None = None):
        super().__init__()
        self._setDefault(statement="SELECT * FROM __THIS__")
        kwargs = self._input_kwargs
        if kwargs.get("statement") is not None:
            self._check(kwargs["statement"])
        self._set(**kwargs)

    def _check(self, statement: str) -> None:
        if not statement or "__THIS__" not in statement:
            raise StageError(f"{self._describe()}: the statement must read from __THIS__, got {statement!r}")

    def setStatement(self, value: str) -> "SQL":
        self._check(value)
        return self._set(statement=value)

    def _run(self, dataset: DataFrame) -> DataFrame:
        # spark.sql's DataFrame arguments: classic PySpark registers a temporary view for the call
        # and drops it afterwards (nothing is left in the catalog); Spark Connect embeds the plan.
        # Dropping a view uncaches the data cached under the same plan, which would drop the caller's
        # own cache of ``dataset``: the view gets a plan of its own (a filter that keeps every row,
        # removed by the optimizer, so the caller's cache still serves the query).
        name = f"zoo_sql_{uuid.uuid4().hex}"
        statement = self.getStatement().replace("{", "{{").replace("}", "}}").replace("__THIS__", "{" + name + "}")
        try:
            return dataset.sparkSession.sql(statement, **{name: dataset.where(F.lit(True))})
        except Exception as exc:
            # the generated names are an implementation detail; report the statement as the user wrote it
            message = re.sub(r"`?\w*zoo_sql_[0-9a-f]{32}\w*`?", "__THIS__", str(exc).split("\n")[0])
            raise SchemaError(f"{self._describe()}: statement {self.getStatement()!r} fails: {message}") from None

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        spark = SparkSession.active()
        return self._run(spark.createDataFrame([], schema)).schema

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self._run(dataset)  # analysis happens here: no separate validation pass needed

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame([(1, 2.0), (2, -1.5), (3, None)], "id long, x double")
        return [StageExample(cls(statement="SELECT id, x * 2 AS x2, x IS NULL AS missing FROM __THIS__ WHERE id > 1"), df)]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("id", T.LongType()), T.StructField("x", T.DoubleType())])
