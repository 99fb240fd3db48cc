"""The state one run of the conformance kit shares between its checks: the stage's examples, one
fit per (stage, data), the outcome of each example as given (the dearest part of the kit: each is
a Spark job), and helpers the checks of several modules use."""

from __future__ import annotations

import os
from typing import Any

from zoo.plugins.jvm import is_jvm_backed, spark_class
from zoo.testing.compare import _error_kind, _fit_df, _multiset, rows

#: how long fuzzing may shrink a failing input before it reports the smallest found so far: each
#: candidate is a Spark job, and VectorAssembler's fuzz shrank for 222 s unbounded
SHRINK_SECONDS = float(os.environ.get("ZOO_KIT_SHRINK_SECONDS", "20"))


class _Kit:
    def __init__(self, cls: type, name: str, spark, fuzz_examples: int):
        self.cls, self.name, self.spark, self.fuzz_examples = cls, name, spark, fuzz_examples
        self.jvm = is_jvm_backed(cls)  # one of Spark's own stages, wrapped (zoo.stages.jvm): its rules
        self.examples = []
        self.first_example = True  # the checks run once per stage do their one-off parts here
        self.unrepeatable = False  # set by check_estimator: fits differ, so comparing two fits proves nothing
        self._fitted: dict[tuple[int, int], Any] = {}  # (stage, fit DataFrame) -> model: one fit per pair
        self._given: dict[int, tuple[str, Any]] = {}  # example -> outcome on the example as given
        self._given_in_order: dict[int, list] = {}  # example -> its output rows in order, when it ran

    def _is_estimator(self) -> bool:
        from pyspark.ml import Estimator

        return issubclass(self.cls, Estimator)

    def _model(self, stage, example):
        """The stage fitted on the example's fit data, once per (stage, data): check_estimator
        proves fitting is repeatable, so the other checks may reuse one fit."""
        key = (id(stage), id(_fit_df(example)))
        if key not in self._fitted:
            self._fitted[key] = (stage, stage.fit(_fit_df(example)))
        return self._fitted[key][1]

    def _apply(self, stage, example, df=None):
        df = example.transform_df if df is None else df
        if self._is_estimator():
            return self._model(stage, example).transform(df)
        return stage.transform(df)

    def _as_given(self, example) -> tuple[str, Any]:
        """The outcome of the example's stage on the example as given, computed once: the unchanged,
        partitioning, persistence, pickle and streaming checks all compare against it (each run is
        a Spark job, and for a model stage the dearest part of the kit)."""
        if id(example) not in self._given:
            self._run_as_given(example.stage, example)
        return self._given[id(example)]

    def _run_as_given(self, stage, example) -> None:
        """Run ``stage`` on the example as given: its outcome, and the rows in order for check_rows."""
        try:
            collected = self._apply(stage, example).collect()
        except Exception as exc:
            self._given[id(example)] = ("error", _error_kind(exc)[0])
            self._given_in_order.pop(id(example), None)
        else:
            self._given[id(example)] = ("ok", _multiset(collected))
            self._given_in_order[id(example)] = collected

    def _given_rows(self, example) -> list:
        """The rows of :meth:`_as_given`; a failure is raised again, as running the stage would."""
        outcome = self._as_given(example)
        return outcome[1] if outcome[0] == "ok" else rows(self._apply(example.stage, example))

def _spark_base(cls: type) -> str:
    try:
        return spark_class(cls).__name__
    except TypeError:
        return "stage"


def _never_null(declared: list, actual: list, out) -> list:
    """``actual`` with a column declared not-null taken as such where ``out`` holds no null in it."""
    from pyspark.sql import functions as F

    fixed = list(actual)
    for i, (name, kind, nullable) in enumerate(actual):
        if nullable and (name, kind, False) in declared and out.where(F.col(name).isNull()).limit(1).count() == 0:
            fixed[i] = (name, kind, False)
    return fixed


def _lost_attributes(a, b) -> list[str]:
    """Plain instance attributes (not Params) that differ between a stage and its loaded copy."""
    from pyspark.ml.param import Param

    internal = {"_paramMap", "_defaultParamMap", "_params", "uid", "_input_kwargs", "_java_obj"}
    lost = []
    for name, value in vars(a).items():
        if name in internal or name.startswith("__") or isinstance(value, Param):
            continue
        other = vars(b).get(name, _MISSING)
        try:
            same = other is not _MISSING and bool(other == value)
        except Exception:
            same = False
        if not same:
            lost.append(name)
    return lost


_MISSING = object()


def _held_in_the_jvm(example):
    """The example with its DataFrames checkpointed in the JVM, rows and partitions unchanged.

    A DataFrame made from Python data (``spark.createDataFrame(rows)``) sends every row through a
    Python worker on every job that reads it, and the checks run dozens of jobs per example: held
    in the JVM, the checks of cache, drop, rename and group_average took 15% less time. Where that
    is impossible (a source that cannot be checkpointed), the example is used as given."""
    import dataclasses

    if not dataclasses.is_dataclass(example):
        return example
    held = _held(example.transform_df)
    fit = held if example.fit_df is example.transform_df else _held(example.fit_df)  # one checkpoint for one DataFrame
    return dataclasses.replace(example, transform_df=held, fit_df=fit)


def _held(df):
    """``df`` checkpointed in the JVM (see :func:`_held_in_the_jvm`), or as given where it cannot be."""
    if df is None or df.isStreaming:
        return df
    try:
        return df.localCheckpoint(eager=True)
    except Exception:
        return df


def _stage_pairs(a, b):
    """Pair up a stage with its copy, descending into Pipelines and PipelineModels."""
    from pyspark.ml import Pipeline, PipelineModel

    if isinstance(a, Pipeline):
        return [pair for x, y in zip(a.getStages(), b.getStages()) for pair in _stage_pairs(x, y)]
    if isinstance(a, PipelineModel):
        return [pair for x, y in zip(a.stages, b.stages) for pair in _stage_pairs(x, y)]
    return [(a, b)]
