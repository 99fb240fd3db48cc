"""``tabular_featurizer``: mixed columns in, one feature vector out, with a report of what was done to each.

``fit`` reads the data once for statistics (one aggregation over every column), decides a
treatment per column, then fits the few stages that need data (string indexers, IDF):

=============  ============================================================================
column type    treatment
=============  ============================================================================
numeric        cast to double; nulls and NaN imputed with the fit-time mean (or median)
boolean        1.0 / 0.0; nulls imputed with the fit-time share of true
string         at most ``maxCategories`` distinct values: index + one-hot, with one extra slot
               for null and values unseen in fit ("categorical"); more distinct values whose
               values average at least ``textMinWords`` words: ``text_featurizer`` ("text");
               otherwise hashed into ``hashFeatures`` buckets ("hashed": names, ids, codes)
date/timestamp year, month, day of month, day of week (+ hour for timestamps, in UTC whatever the
               session time zone); nulls imputed
vector, array  appended as they are (nulls are an error naming the column: their width is unknown)
other          map, struct, binary...: skipped with inputCols empty, an error when named
=============  ============================================================================

``model.report()`` lists each column with its type, treatment, fit-time statistics and width in
the output, in output order; ``model.summary()`` prints it as a table. With ``inputCols`` empty
every column except ``excludeCols`` is used: exclude the label and row ids yourself.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCols, HasOutputCol
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooEstimator, ZooModel, is_numeric
from zoo.stages.params import param
from zoo.stages.persistence import HasInnerModel

from zoo.errors import SchemaError, StageError

_DATE_PARTS = {"year": F.year, "month": F.month, "day": F.dayofmonth, "weekday": F.dayofweek}


def _type_kind(t: T.DataType) -> str | None:
    if isinstance(t, T.BooleanType):
        return "boolean"
    if is_numeric(t):
        return "numeric"
    if isinstance(t, T.StringType):
        return "string"
    if isinstance(t, (T.TimestampType, T.TimestampNTZType)):
        return "timestamp"
    if isinstance(t, T.DateType):
        return "date"
    if isinstance(t, VectorUDT):
        return "vector"
    if isinstance(t, T.ArrayType) and (is_numeric(t.elementType) or isinstance(t.elementType, T.BooleanType)):
        return "array"
    return None


class _TabularFeaturizerParams(HasInputCols, HasOutputCol):
    excludeCols = param("columns never used (the label, row ids) when inputCols is empty", list[str])
    maxCategories = param("strings with at most this many distinct values are "
                          "one-hot encoded", int)
    textMinWords = param("strings with more distinct values averaging at least this "
                         "many words are free text; fewer words: hashed categories", float)
    hashFeatures = param("hash buckets for all high-cardinality categorical columns", int)
    textFeatures = param("hash buckets per free-text column", int)
    imputeStrategy = param("what fills missing numbers: mean or median")

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(inputCols=[], outputCol="features", excludeCols=[], maxCategories=32, textMinWords=2.0,
                         hashFeatures=256, textFeatures=4096, imputeStrategy="mean")

    def _columns(self, schema: T.StructType) -> list[tuple[str, str]]:
        """(column, type kind) of the columns to featurize; SchemaError for bad ones."""
        problems = []
        if self.getImputeStrategy() not in ("mean", "median"):
            problems.append(f"imputeStrategy must be mean or median, got {self.getImputeStrategy()!r}")
        for name in ("maxCategories", "hashFeatures", "textFeatures"):
            if self.getOrDefault(name) < 1:
                problems.append(f"{name} must be >= 1, got {self.getOrDefault(name)}")
        if problems:
            raise StageError(f"{self._describe()}: " + "; ".join(problems))
        self.require_new_column(schema, self.getOutputCol())
        if self.getInputCols():
            out = []
            for name in self.getInputCols():
                field = self.require_column(schema, name, "a numeric, boolean, string, date, timestamp, vector or "
                                             "array<numeric> column", accept=lambda t: _type_kind(t) is not None)
                out.append((name, _type_kind(field.dataType)))
            return out
        skip = set(self.getExcludeCols())
        chosen = [(f.name, _type_kind(f.dataType)) for f in schema.fields if f.name not in skip]
        chosen = [(n, k) for n, k in chosen if k is not None]
        if not chosen:
            raise SchemaError(f"{self._describe()}: no usable column: every column is excluded or of an unsupported "
                              f"type (available: {', '.join(schema.fieldNames()) or 'none'})")
        return chosen

    def _schema(self, schema: T.StructType) -> T.StructType:
        self._columns(schema)
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])


def _col(name: str) -> Column:
    return F.col(f"`{name}`")


def _clean_number(c: Column) -> Column:
    """The column as double with NaN turned into null (so aggregates skip it)."""
    d = c.cast("double")
    return F.when(~F.isnan(d), d)


def _parts(kind: str) -> list[str]:
    return [*_DATE_PARTS, *(["hour"] if kind == "timestamp" else [])]


def _utc_wall_clock(dataset: DataFrame, name: str) -> Column:
    """A date or timestamp column whose parts read the same in any session: a timestamp (an instant)
    as UTC's wall clock, whatever ``spark.sql.session.timeZone`` says; dates and timestamp_ntz have
    no time zone and stay as they are."""
    c = _col(name)
    if isinstance(dataset.schema[name].dataType, T.TimestampType):
        return F.to_utc_timestamp(c, F.current_timezone())
    return c


def _part(c: Column, part: str) -> Column:
    return (F.hour(c) if part == "hour" else _DATE_PARTS[part](c)).cast("double")


class TabularFeaturizer(_TabularFeaturizerParams, ZooEstimator):
    """Turn mixed columns (numbers, booleans, categories, free text, dates, vectors, arrays) into
    one feature vector ``outputCol`` for any SparkML learner; see the module doc for each type."""

    zoo_name = "tabular_featurizer"
    zoo_former_names = ("featurize",)  # its name before 0.3; `zoo featurize` is the image command

    @keyword_only
    def __init__(self, *, inputCols: list[str] | None = None, outputCol: str | None = None,
                 excludeCols: list[str] | None = None, maxCategories: int | None = None,
                 textMinWords: float | None = None, hashFeatures: int | None = None, textFeatures: int | None = None,
                 imputeStrategy: str | None = None):
        super().__init__()
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        return self._schema(schema)

    # -- fit ------------------------------------------------------------------------------------------
    def _statistics(self, dataset: DataFrame, columns: list[tuple[str, str]]) -> dict[str, Any]:
        """Everything the decisions need, in one aggregation (one pass over the data)."""
        from pyspark.ml.functions import vector_to_array

        center = (lambda c: F.percentile_approx(c, 0.5)) if self.getImputeStrategy() == "median" else F.avg
        aggs = [F.count(F.lit(1)).alias("rows")]
        for i, (name, kind) in enumerate(columns):
            c = _col(name)
            if kind in ("numeric", "boolean"):
                aggs.append(center(_clean_number(c)).alias(f"{i}_center"))
            elif kind in ("date", "timestamp"):
                aggs += [center(_part(_utc_wall_clock(dataset, name), p)).alias(f"{i}_{p}") for p in _parts(kind)]
            elif kind == "string":
                aggs.append(F.approx_count_distinct(c).alias(f"{i}_distinct"))
                aggs.append(F.avg(F.size(F.split(F.trim(c), r"\s+"))).alias(f"{i}_words"))
            elif kind == "vector":
                aggs.append(F.max(F.size(vector_to_array(c))).alias(f"{i}_width"))
            elif kind == "array":
                aggs.append(F.max(F.size(c)).alias(f"{i}_width"))
        return dataset.agg(*aggs).first().asDict()

    def _fit_validated(self, dataset: DataFrame) -> "TabularFeaturizerModel":
        from pyspark.ml import Pipeline
        from pyspark.ml.feature import (
            FeatureHasher,
            OneHotEncoder,
            StringIndexer,
            StringIndexerModel,
        )
        from zoo.stages.text_featurizer import TextFeaturizer
        from zoo.stages.vector_assembler import VectorAssembler

        columns = self._columns(dataset.schema)
        stats = self._statistics(dataset, columns)
        tmp = f"__{self.uid}_"
        plan: list[dict[str, Any]] = []
        categorical, hashed, stages = [], [], []
        for i, (name, kind) in enumerate(columns):
            entry: dict[str, Any] = {"column": name, "type": kind, "features": f"{tmp}{i}"}
            if kind in ("numeric", "boolean"):
                center = stats[f"{i}_center"]
                entry.update(treatment="number, imputed", fill=float(center) if center is not None else 0.0, width=1)
            elif kind in ("date", "timestamp"):
                fills = {p: float(stats[f"{i}_{p}"]) if stats[f"{i}_{p}"] is not None else 0.0 for p in _parts(kind)}
                entry.update(treatment="date parts (" + ", ".join(fills) + "), imputed", fill=fills, width=len(fills))
            elif kind == "string":
                distinct, words = stats[f"{i}_distinct"], stats[f"{i}_words"] or 0.0
                entry.update(distinct=distinct, mean_words=round(float(words), 2))
                if distinct <= self.getMaxCategories():
                    entry.update(treatment="categorical: index + one-hot (+1 slot for null/unseen)")
                    categorical.append(entry)
                elif words >= self.getTextMinWords():
                    entry.update(treatment="text: text_featurizer (TF-IDF)", width=self.getTextFeatures())
                    stages.append(TextFeaturizer(inputCol=name, outputCol=entry["features"],
                                                 numFeatures=self.getTextFeatures()))
                else:
                    entry.update(treatment="hashed category", width=self.getHashFeatures(), features=f"{tmp}hashed")
                    hashed.append(name)
            else:  # vector, array
                width = stats[f"{i}_width"]
                entry.update(treatment="appended as is", width=int(width) if width is not None else None,
                             features=name)
            plan.append(entry)
        if categorical:
            indexed = [f"{e['features']}_index" for e in categorical]
            stages.append(StringIndexer(inputCols=[e["column"] for e in categorical], outputCols=indexed,
                                        handleInvalid="keep", stringOrderType="frequencyDesc"))
            stages.append(OneHotEncoder(inputCols=indexed, outputCols=[e["features"] for e in categorical],
                                        handleInvalid="keep", dropLast=True))  # the indexer's null/unseen slot is kept
        if hashed:
            stages.append(FeatureHasher(inputCols=hashed, categoricalCols=hashed, outputCol=f"{tmp}hashed",
                                        numFeatures=self.getHashFeatures()))
        order = list(dict.fromkeys(e["features"] for e in plan))  # one hashed vector for all hashed columns
        stages.append(VectorAssembler(inputCols=order, outputCol=self.getOutputCol()))
        prepared = TabularFeaturizerModel._prepare(dataset, plan)
        inner = Pipeline(stages=stages).fit(prepared)
        for stage in inner.stages:  # categories learnt by the indexer give the one-hot widths
            if isinstance(stage, StringIndexerModel):
                for entry, labels in zip(categorical, stage.labelsArray):
                    entry.update(width=len(labels) + 1, categories=labels[:10] + (["..."] if len(labels) > 10 else []))
        model = TabularFeaturizerModel()
        self._copyValues(model)
        model._set(plan=json.dumps(plan))
        model._inner = inner
        return model

    @classmethod
    def zoo_examples(cls, spark):
        import datetime as dt

        from pyspark.ml.linalg import Vectors

        fields = [("id", T.IntegerType()), ("age", T.DoubleType()), ("member", T.BooleanType()), ("city", T.StringType()),
                  ("comment", T.StringType()), ("code", T.StringType()), ("joined", T.TimestampType()),
                  ("embedding", VectorUDT()), ("scores", T.ArrayType(T.FloatType())), ("label", T.IntegerType())]
        schema = T.StructType([T.StructField(n, t) for n, t in fields])
        rows = [
            (i, [31.0, None, float("nan"), 45.5][i % 4], [True, False, None][i % 3], ["Oslo", "Lima", None, "Pune"][i % 4],
             [f"great service and friendly staff, visit {i}", f"slow delivery, parcel {i} was damaged", None,
              "would order again from this shop"][i % 4], f"C{i * 7919 % 1000:03d}",
             dt.datetime(2024, 1 + i % 12, 1 + i % 27, i % 24, 0), Vectors.dense([i / 10, 1 - i / 10]),
             [float(i), float(i % 3)], i % 2)
            for i in range(40)
        ]
        df = spark.createDataFrame(rows, schema)
        return [  # the first matches zoo_fuzz_schema: the kit fuzzes its transform
            StageExample(cls(inputCols=["age", "city", "joined"], outputCol="x", imputeStrategy="median"), df),
            StageExample(cls(excludeCols=["id", "label"], maxCategories=8, hashFeatures=16, textFeatures=32), df),
        ]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("age", T.DoubleType()), T.StructField("city", T.StringType()),
                             T.StructField("joined", T.TimestampType())])


class TabularFeaturizerModel(HasInnerModel, _TabularFeaturizerParams, ZooModel):
    """A fitted :class:`TabularFeaturizer`: the per-column plan (with fit-time statistics, a param) and the
    fitted inner stages (indexers, text featurizers, hasher, assembler) as a ``PipelineModel`` in
    ``_inner``, saved in the sub-folder ``pipeline``."""

    zoo_name = "tabular_featurizer_model"
    _inner_dir = "pipeline"
    plan = param("what is done to each column, with fit-time statistics (JSON; read "
                 "it with report())")

    def __init__(self):
        super().__init__()
        self._setDefault(plan="[]")
        self._inner = None

    @classmethod
    def _inner_class(cls) -> type:
        from pyspark.ml import PipelineModel

        return PipelineModel

    def report(self) -> list[dict[str, Any]]:
        """Each featurized column in output order: type, treatment, statistics, width."""
        return [{k: v for k, v in e.items() if k != "features"} for e in json.loads(self.getOrDefault(self.plan))]

    def summary(self) -> str:
        """The report as a plain-text table."""
        lines = [f"{'column':24} {'type':10} {'width':>6}  treatment"]
        for e in self.report():
            lines.append(f"{e['column'][:24]:24} {e['type']:10} {str(e.get('width', '?')):>6}  {e['treatment']}")
        return "\n".join(lines)

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        for e in json.loads(self.getOrDefault(self.plan)):
            self.require_column(schema, e["column"], f"a {e['type']} column, as in fit",
                                 accept=lambda t, want=e["type"]: _type_kind(t) == want)
        self.require_new_column(schema, self.getOutputCol())
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])

    @staticmethod
    def _prepare(dataset: DataFrame, plan: list[dict[str, Any]]) -> DataFrame:
        """Imputed numbers and date parts, as the columns the inner stages assemble."""
        new: dict[str, Column] = {}
        for e in plan:
            c = _col(e["column"])
            if e["type"] in ("numeric", "boolean"):
                new[e["features"]] = F.coalesce(_clean_number(c), F.lit(e["fill"]))
            elif e["type"] in ("date", "timestamp"):
                wall = _utc_wall_clock(dataset, e["column"])
                new[e["features"]] = F.array(*[F.coalesce(_part(wall, p), F.lit(v)) for p, v in e["fill"].items()])
        return dataset.withColumns(new) if new else dataset

    def _apply(self, dataset: DataFrame) -> DataFrame:
        plan = json.loads(self.getOrDefault(self.plan))
        out = self._inner.transform(self._prepare(dataset, plan))
        keep = {*dataset.columns, self.getOutputCol()}
        return out.drop(*[c for c in out.columns if c not in keep])
