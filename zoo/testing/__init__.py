"""The conformance kit: holds every registered stage, ours and third parties', to one standard.

Three lines in a plugin's tests::

    from zoo.testing import assert_conforms

    def test_my_stage_conforms(zoo_spark):          # zoo_spark: fixture of the zoo pytest plugin
        assert_conforms("my_stage", zoo_spark)

Checks (each failure names the stage, the check and, for fuzzing, a minimal reproducing input):

``meta``        the stage has a docstring, a ``zoo_name`` and at least one example
``construct``   ``cls()`` works with no arguments
``defaults``    two fresh instances share no mutable param value (a list or dict default built once)
``params``      every param documented, JSON-serialisable, named like its attribute; setter/getter round trip
``copy``        ``copy()`` is independent of the original
``schema``      ``transformSchema`` equals the schema ``transform`` produces: names, types and
                nullability (also on an empty DataFrame)
``unchanged``   ``fit``/``transform`` leave the stage's params as they were (compared by deep copy)
``rows``        the rows come out as the stage declares (``zoo_rows``): by default every input row once,
                in order; ``reorder``, ``filter`` (``handleInvalid='skip'`` implies it), ``expand`` or
                ``aggregate`` otherwise
``partitioning``  one partition, many partitions, shuffled rows and a tiny Arrow batch size give the same
                rows (a failure shows the rows that differ)
``fuzz``        Hypothesis-generated inputs (nulls, NaN/inf, extremes, unicode, empty) never crash the
                stage (a ``zoo.errors`` error is a clean refusal; any other Python or JVM exception is a
                crash), keep the declared rows, and give the same outcome whatever the partitioning; a
                failure shows the smallest input that shows it
``bad_input``   a missing or wrongly typed input column raises ``zoo.errors.SchemaError`` (or is not needed)
``persistence`` save / save again fails / overwrite / load restores uid and every param (unset stays
                unset) / same output (naming a plain attribute that was not saved); also for a fitted
                model, a one-stage Pipeline and its PipelineModel
``pickle``      the stage survives cloudpickle
``estimator``   ``fit`` returns a Model, and fitting twice gives the same output (checked first: an
                estimator whose fit is not repeatable is reported once, here, not also by the checks
                that compare two fits)
``streaming``   for stages that declare ``zoo_streaming = True``: a Structured Streaming query over
                each example (parquet file source, memory sink) gives the batch output, as Spark's
                own ``MLTest.testTransformer`` runs batch and stream

and the properties of every correct stage (:mod:`zoo.testing.properties`): ``environment`` (session
settings that must not matter do not), ``independence`` (a row alone gives what it gives in the
frame), ``fit_hostile`` (an estimator on empty, null, one-row, constant data), ``collision`` (an
existing output column is refused), ``types`` (what transformSchema accepts transforms) and
``side_effects`` (the caller's DataFrame stays as it was). ``schema`` also holds an estimator's
transformSchema to what its fitted model makes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from zoo.errors import SchemaError, StageError
from zoo.log import quiet_spark as quiet_spark_logs  # the kit provokes failures on purpose: keep Spark quiet
from zoo.testing import properties
from zoo.plugins.jvm import declared_schema, defaults_from_the_jvm, is_jvm_backed, spark_class
from zoo.testing.compare import (
    JVM_STAGE,
    _AQE_COALESCE,
    ROW_POLICIES,
    _collect_together,
    _conf,
    _differs,
    _error_kind,
    _essence,
    _Fail,
    _fit_df,
    _multiset,
    _outcome,
    _row_diff,
    _row_policy,
    _rows_problem,
    _same,
    _schema_gap,
    _schema_str,
    _schema_text,
    rows,
)

__all__ = ["CHECKS", "JVM_OPTIONS", "CheckResult", "Failure", "assert_conforms", "check_all", "check_stage",
           "prefer_jvm_options", "quiet_spark_logs", "rows", "run_checks", "stage_names"]

#: Java options for a Spark driver that runs the kit or a test suite: thousands of small, different
#: queries in a JVM that lives minutes. C1-only JIT compiles them cheaply instead of spending CPU on
#: C2 compilations such a short life never repays: ``zoo check select drop`` took 30.6 s of JVM CPU
#: with the default tiered JIT and 14.9 s with C1 only (wall 21.4 -> 16.4 s on 2 cores;
#: ``benchmarks/bench_kit.py --cli``).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def prefer_jvm_options() -> None:
    """Start the Spark drivers this process (and its children) launch next with :data:`JVM_OPTIONS`,
    through ``SPARK_SUBMIT_OPTS`` and only when it is unset: unlike a ``--conf``, that leaves a
    user's ``spark.driver.extraJavaOptions`` alone."""
    os.environ.setdefault("SPARK_SUBMIT_OPTS", JVM_OPTIONS)

#: how long fuzzing may shrink a failing input before it reports the smallest found so far: each
#: candidate is a Spark job, and VectorAssembler's fuzz shrank for 222 s unbounded
SHRINK_SECONDS = float(os.environ.get("ZOO_KIT_SHRINK_SECONDS", "20"))

# checks that run once per example (each reported on its own); the others run once per stage
PER_EXAMPLE = ("params", "schema", "unchanged", "rows", "partitioning", "estimator", "persistence", "pickle",
               "streaming")
CHECKS = (
    "meta", "construct", "defaults", "params", "copy", "schema", "unchanged", "rows", "partitioning", "fuzz",
    "bad_input", "estimator", "persistence", "pickle", "streaming",
    # properties of every correct stage (zoo.testing.properties)
    "environment", "independence", "fit_hostile", "collision", "types", "side_effects",
)


@dataclass(frozen=True)
class Failure:
    """One failed check of one stage."""

    stage: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"[{self.stage}] {self.check}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    """One check run on one stage: passed or not, how long it took, and the failure if any."""

    stage: str
    check: str
    ok: bool
    seconds: float
    message: str = ""
    example: int | None = None  # which of the stage's examples, for the checks run once per example

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "check": self.check, "example": self.example, "ok": self.ok,
                "seconds": round(self.seconds, 3), "message": self.message}


# -- comparing outputs -----------------------------------------------------------------------------


# -- the checks --------------------------------------------------------------------------------------
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

    def check_meta(self) -> None:
        if not (self.cls.__doc__ or "").strip():
            raise _Fail("the class has no docstring")
        if not getattr(self.cls, "zoo_name", ""):
            raise _Fail("the class has no zoo_name")
        if self.jvm and not getattr(self.cls, "zoo_jvm", False):
            raise _Fail(f"{self.cls.__qualname__} extends Spark's JVM-backed {_spark_base(self.cls)} without "
                        "zoo.stages.jvm.JvmStage: load() would look for a Scala class named after your module and "
                        f"fail; declare it as class {self.cls.__name__}(JvmStage, {_spark_base(self.cls)})")
        if not self.examples:
            raise _Fail("zoo_examples(spark) returned no examples; the kit needs at least one realistic case")
        for i, example in enumerate(self.examples):
            policy = _row_policy(example.stage)
            if policy not in ROW_POLICIES:
                raise _Fail(f"example {i}: zoo_rows is {policy!r}; declare one of {', '.join(ROW_POLICIES)}")

    def check_construct(self) -> None:
        try:
            self.cls()
        except Exception as exc:
            raise _Fail(f"{self.cls.__qualname__}() fails: {type(exc).__name__}: {exc}") from None

    def check_defaults(self) -> None:
        a, b = self.cls(), self.cls()
        for p in a.params:
            if not a.isDefined(p):
                continue
            value = a.getOrDefault(p)
            if isinstance(value, (list, dict, set, bytearray)) and value is b.getOrDefault(b.getParam(p.name)):
                raise _Fail(
                    f"param {p.name!r}: two fresh instances share one {type(value).__name__} object as its value, so "
                    "changing it in one stage changes every stage; build a new one in __init__ (e.g. "
                    f"self._setDefault({p.name}=[])) instead of a class-level or module-level object"
                )
        for name, value in vars(a).items():
            if isinstance(value, (list, dict, set, bytearray)) and value and value is vars(b).get(name):
                raise _Fail(f"attribute {name!r} is one {type(value).__name__} object shared by every instance")

    def check_params(self) -> None:
        for example in self.examples:
            stage = example.stage
            for p in stage.params:
                if not (p.doc or "").strip():
                    raise _Fail(f"param {p.name!r} has no doc")
                if getattr(type(stage), p.name, None) is None or getattr(stage, p.name).name != p.name:
                    raise _Fail(f"param {p.name!r} is not the class attribute of the same name")
                if stage.isDefined(p):
                    value = stage.getOrDefault(p)
                    try:
                        json.dumps(value)
                    except TypeError:
                        raise _Fail(f"param {p.name!r} value {value!r} is not JSON-serialisable") from None
                    setter = getattr(stage, f"set{p.name[0].upper()}{p.name[1:]}", None)
                    getter = getattr(stage, f"get{p.name[0].upper()}{p.name[1:]}", None)
                    if setter is None or getter is None:
                        raise _Fail(f"param {p.name!r} lacks set{p.name[0].upper()}{p.name[1:]}/get... methods")
                    copy = stage.copy()
                    getattr(copy, setter.__name__)(value)
                    if not _same(getattr(copy, getter.__name__)(), value):
                        raise _Fail(f"param {p.name!r}: the getter does not return what the setter set")

    def check_copy(self) -> None:
        stage = self.examples[0].stage
        before = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
        copy = stage.copy()
        for p in copy.params:
            if copy.isDefined(p) and isinstance(copy.getOrDefault(p), list):
                copy._set(**{p.name: []})
        after = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
        if not _same(before, after):
            raise _Fail(f"changing a copy changed the original: {before} -> {after}")

    def check_schema(self) -> None:
        for example in self.examples:
            df = example.transform_df
            stage = self._model(example.stage, example) if self._is_estimator() else example.stage
            declared = _schema_str(declared_schema(stage, df.schema))
            transformed = stage.transform(df)
            actual = _schema_str(transformed.schema)
            if self.jvm:  # Spark's convention, not a lie: a column its UDF fills is nullable however declared
                actual = _never_null(declared, actual, transformed)
            if declared != actual:
                raise _Fail(f"transformSchema says [{_schema_text(declared)}] but transform produces "
                            f"[{_schema_text(actual)}]; they differ in {_schema_gap(declared, actual)}")
            if self._is_estimator():  # what the estimator promises is what its fitted model makes
                promised = _schema_str(declared_schema(example.stage, df.schema))
                if promised != actual:
                    raise _Fail(f"the estimator's transformSchema says [{_schema_text(promised)}] but its fitted "
                                f"model produces [{_schema_text(actual)}]; they differ in "
                                f"{_schema_gap(promised, actual)} (a model built without the estimator's Params: "
                                "copy them, e.g. self._copyValues(model))")
            empty = self.spark.createDataFrame([], df.schema)
            out = stage.transform(empty)
            produced = _schema_str(out.schema)
            if self.jvm:
                produced = _never_null(declared, produced, out)
            if produced != declared or out.count() != 0:
                raise _Fail("an empty input does not give an empty output with the declared schema")

    def check_unchanged(self) -> None:
        import copy as _copy

        for example in self.examples:
            stage = example.stage
            # deep copies: a list param mutated in place would otherwise compare equal to itself
            before = _copy.deepcopy({p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None)
                                     for p in stage.params})
            self._run_as_given(stage, example)  # always run here
            after = {p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None) for p in stage.params}
            changed = {k: (before[k][1], after[k][1]) for k in before if not _same(before[k], after.get(k))}
            if changed:
                detail = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise _Fail(f"fit/transform changed params ({detail}); a stage must not modify its params, "
                            "not even a list or dict value in place")

    def check_rows(self) -> None:
        for example in self.examples:
            policy = _row_policy(example.stage)
            if policy == "aggregate":
                continue
            df = example.transform_df
            try:
                out = self._apply(example.stage, example)
                ordered = self._given_in_order.get(id(example))  # the unchanged check ran it already
                if ordered is None:
                    ordered = out.collect()
            except Exception as exc:
                raise _Fail(f"the stage fails on its own example: {_essence(exc)}") from None
            problem = _rows_problem(policy, df.columns, [tuple(r) for r in df.collect()], df.schema, out,
                                    ordered=ordered)
            if problem:
                raise _Fail(problem)

    def _variants(self, df):
        from pyspark.sql import functions as F

        return {
            "one partition": df.repartition(1),
            "16 partitions, some empty": df.repartition(16),
            "shuffled": df.orderBy(F.rand(seed=7)).repartition(3),
        }

    def check_partitioning(self) -> None:
        arrow = "spark.sql.execution.arrow.maxRecordsPerBatch"
        for example in self.examples:
            try:
                reference = ("ok", self._given_rows(example))
            except Exception as exc:
                raise _Fail(f"the stage fails on its own example: {type(exc).__name__}: {_essence(exc)}") from None
            with _conf(self.spark, {_AQE_COALESCE: "false"}):
                variants = self._variants(example.transform_df)
                together = _collect_together([lambda df=df: self._apply(example.stage, example, df)
                                              for df in variants.values()])
                for i, (label, df) in enumerate(variants.items()):
                    other = (("ok", _multiset(together[i])) if together is not None
                             else _outcome(lambda: self._apply(example.stage, example, df)))
                    if other != reference:
                        raise _Fail(f"the output with {label} differs from the output on the example as given: "
                                    f"{_differs(reference, other)}")
            with _conf(self.spark, {arrow: "1"}):
                tiny = _outcome(lambda: self._apply(example.stage, example))
            if tiny != reference:
                raise _Fail(f"the output depends on the Arrow batch size ({arrow}=1): {_differs(reference, tiny)}")

    def check_fuzz(self) -> None:
        schema = self.cls.zoo_fuzz_schema()
        if schema is None:
            return
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st
        from pyspark.sql import functions as F

        from zoo.testing.strategies import rows_for

        examples = self.examples  # each generated input meets one of the examples' configurations
        failing: list[Any] = []
        found_at: list[float] = []  # when the first failing input was found: shrinking gets SHRINK_SECONDS

        current = [0]  # the example whose configuration the input being run meets

        def fail(data, problem: str) -> None:
            failing[:] = [data, problem, current[0]]
            found_at[:1] = found_at[:1] or [time.monotonic()]

        @settings(max_examples=self.fuzz_examples, deadline=None, database=None, report_multiple_bugs=False,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(rows_for(schema), st.integers(0, len(examples) - 1))
        def run(data, which):
            if found_at and time.monotonic() - found_at[0] > SHRINK_SECONDS:
                return  # shrinking has had its time: every further candidate passes, the smallest so far is told
            example = examples[which]  # drawn, so a failing input shrinks with its configuration
            policy = _row_policy(example.stage)
            current[:] = [which]
            df = self.spark.createDataFrame(data, schema)
            # as given and one layout against it: rows scattered at random over 16 partitions, some
            # empty (the partitioning check runs every layout on the examples); one job for both when
            # both succeed (the usual case), else each alone so a failure is told apart
            shuffled = df.repartition(16, F.rand(seed=7))
            together = None
            try:  # as given, collected in order: the rows check needs the order, the others the multiset
                out = self._apply(example.stage, example, df)
                if not failing:  # once an input failed, Hypothesis shrinks it: most candidates fail, run alone
                    with _conf(self.spark, {_AQE_COALESCE: "false"}):
                        together = _collect_together([lambda: out,
                                                      lambda: self._apply(example.stage, example, shuffled)])
                ordered = together[0] if together is not None else out.collect()
                given_outcome: tuple[str, Any] = ("ok", _multiset(ordered))
            except Exception as exc:
                kind, clean, line = _error_kind(exc)
                if not clean:
                    fail(data, f"crashed with {line or kind}; a stage must give each row its documented "
                               "outcome or refuse the input with a zoo.errors error")
                    raise AssertionError("crash") from None
                given_outcome = ("error", kind)
            if given_outcome[0] == "ok" and policy != "aggregate":  # the input as Spark holds it (float32, ...)
                problem = _rows_problem(policy, df.columns, [tuple(r) for r in df.collect()], schema, out,
                                        ordered=ordered)
                if problem:
                    fail(data, problem)
                    raise AssertionError("rows")
            if together is not None:
                other: tuple[str, Any] = ("ok", _multiset(together[1]))
            else:
                with _conf(self.spark, {_AQE_COALESCE: "false"}):
                    other = _outcome(lambda: self._apply(example.stage, example, shuffled))
            if other != given_outcome:
                fail(data, "the outcome depends on partitioning or row order (shuffled into 16 partitions: "
                                    f"{_differs(given_outcome, other)})")
                raise AssertionError("partitioning")

        try:
            run()
        except Exception:
            if not failing:
                raise
            data, problem, which = failing
            config = f" (with example {which}'s configuration)" if len(examples) > 1 else ""
            raise _Fail(f"{problem}; smallest input found{config}: rows={data!r}") from None

    def check_bad_input(self) -> None:
        from pyspark.sql import functions as F
        from pyspark.sql.types import BinaryType

        example = self.examples[0]
        df = example.transform_df
        for column in df.columns:
            variants = [("missing", df.drop(column))]
            if not isinstance(df.schema[column].dataType, BinaryType):  # binary may be what the stage wants
                variants.append(("of type binary", df.withColumn(column, F.lit(b"\x00").cast("binary"))))
            for label, broken in variants:
                try:
                    self._apply(example.stage, example, broken).collect()
                except SchemaError:
                    continue
                except Exception as exc:
                    if self.jvm and _error_kind(exc)[1]:
                        continue  # Spark's own refusal (its message is Spark's to word)
                    raise _Fail(
                        f"input column {column!r} {label} raised {type(exc).__name__} instead of zoo.errors.SchemaError: "
                        f"{_essence(exc)}"
                    ) from None

    def _roundtrip(self, obj, kind: str, compare_df, loader, *, writer_protocol: bool = False,
                   reference: list | None = None) -> None:
        """save, load, compare ``compare_df(loaded)`` with ``reference`` (default ``compare_df(obj)``).
        ``writer_protocol``: also check that a second save() fails and overwrite() works
        (SparkML's writer contract; each is a Spark job, so once per stage)."""
        path = tempfile.mkdtemp(prefix="zoo-kit-")
        try:
            target = os.path.join(path, "stage")
            obj.save(target)
            if writer_protocol:
                try:
                    obj.save(target)
                except Exception:
                    pass
                else:
                    raise _Fail(f"{kind}: a second save() to an existing path did not fail")
                obj.write().overwrite().save(target)
            loaded = loader(target)
            for stage in _stage_pairs(loaded, loaded):
                if is_jvm_backed(stage[0]):  # compare what the JVM, which does the work, will use
                    defaults_from_the_jvm(stage[0])
            if getattr(loaded, "uid", None) != obj.uid:
                raise _Fail(f"{kind}: load() changed the uid from {obj.uid} to {loaded.uid}")
            for a, b in _stage_pairs(obj, loaded):
                for p in a.params:
                    lp = b.getParam(p.name)
                    if a.isSet(p) != b.isSet(lp):
                        raise _Fail(f"{kind}: param {p.name!r} set={a.isSet(p)} before save, set={b.isSet(lp)} after load")
                    if a.isDefined(p) and not _same(a.getOrDefault(p), b.getOrDefault(lp)):
                        raise _Fail(f"{kind}: param {p.name!r} was {a.getOrDefault(p)!r}, loaded {b.getOrDefault(lp)!r}")
            if compare_df is not None:
                before = reference if reference is not None else rows(compare_df(obj))
                after = rows(compare_df(loaded))
                if before != after:
                    lost = [name for a, b in _stage_pairs(obj, loaded) for name in _lost_attributes(a, b)]
                    hint = (f"; attribute(s) {', '.join(map(repr, lost))} set on the instance are not Params, so "
                            "save() did not write them: make each a Param (or persist it in the stage's writer)"
                            if lost else "")
                    raise _Fail(f"{kind}: the loaded stage gives different output ({_row_diff(before, after)}){hint}")
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def check_persistence(self) -> None:
        from pyspark.ml import Pipeline, PipelineModel

        for i, example in enumerate(self.examples):
            stage, df = example.stage, example.transform_df
            fit_df = _fit_df(example)
            estimator = self._is_estimator()
            transform = (lambda s: s.fit(fit_df).transform(df)) if estimator else (lambda s: s.transform(df))
            two_fits = self.unrepeatable  # two fits differ anyway: check_estimator has said so, once
            reference = self._given_rows(example)  # of the one fit the other checks use too
            self._roundtrip(stage, "stage", None if two_fits else transform, type(stage).load,
                            writer_protocol=self.first_example and i == 0, reference=reference)
            if estimator:
                model = self._model(stage, example)
                self._roundtrip(model, "fitted model", lambda m: m.transform(df), type(model).load, reference=reference)
            if not (self.first_example and i == 0):
                continue  # inside a Pipeline the stage saves the same way whatever its params: once per stage
            pipeline = Pipeline(stages=[stage])
            self._roundtrip(pipeline, "one-stage Pipeline", None if two_fits else (lambda p: p.fit(fit_df).transform(df)),
                            Pipeline.load, reference=reference)
            fitted = PipelineModel(stages=[self._model(stage, example) if estimator else stage])
            self._roundtrip(fitted, "PipelineModel", lambda m: m.transform(df), PipelineModel.load, reference=reference)

    def check_pickle(self) -> None:
        from pyspark import cloudpickle

        for example in self.examples:
            clone = cloudpickle.loads(cloudpickle.dumps(example.stage))
            for a, b in _stage_pairs(example.stage, clone):
                for p in a.params:
                    if a.isDefined(p) and not _same(a.getOrDefault(p), b.getOrDefault(b.getParam(p.name))):
                        raise _Fail(f"param {p.name!r} changed through cloudpickle")
            if self.unrepeatable:
                continue  # the clone's fit differs from the original's anyway (reported by check_estimator)
            if rows(self._apply(clone, example)) != self._given_rows(example):
                raise _Fail("the unpickled stage gives different output")

    def check_streaming(self) -> None:
        import uuid

        if not getattr(self.cls, "zoo_streaming", False):
            return  # the stage does not claim streaming support
        for example in self.examples:
            reference = self._as_given(example)
            if reference[0] != "ok":
                continue  # examples that fail by design are covered by the other checks
            with tempfile.TemporaryDirectory(prefix="zoo-kit-stream-") as tmp:
                source = os.path.join(tmp, "in")
                example.transform_df.write.parquet(source)
                stream = self.spark.readStream.schema(example.transform_df.schema).parquet(source)
                name = f"zoo_kit_{uuid.uuid4().hex}"
                try:
                    writer = self._apply(example.stage, example, stream).writeStream.format("memory")
                    query = writer.queryName(name).option("checkpointLocation", os.path.join(tmp, "checkpoint")).start()
                except Exception as exc:
                    raise _Fail(f"the stage cannot transform a streaming DataFrame: {type(exc).__name__}: "
                                f"{_essence(exc)}") from None
                try:
                    query.processAllAvailable()
                    streamed = ("ok", rows(self.spark.table(name)))
                except Exception as exc:
                    raise _Fail(f"a streaming query over the example failed: {_essence(exc)}") from None
                finally:
                    query.stop()
                    self.spark.catalog.dropTempView(name)
            if streamed != reference:
                raise _Fail("a stream of the example gives different rows than the batch transform")

    def check_estimator(self) -> None:
        if not self._is_estimator():
            return
        from pyspark.ml import Model

        for example in self.examples:
            fit_df = _fit_df(example)
            first, second = self._model(example.stage, example), example.stage.fit(fit_df)
            if not isinstance(first, Model):
                raise _Fail(f"fit returned {type(first).__name__}, not a pyspark.ml.Model")
            a, b = rows(first.transform(example.transform_df)), rows(second.transform(example.transform_df))
            if a != b:
                self.unrepeatable = True
                raise _Fail(f"fitting twice on the same data gives different models ({_row_diff(a, b)}); the "
                            "persistence and pickle checks skip comparing separate fits for this stage")


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


def _resolve(stage: str | type) -> tuple[type | None, str, str]:
    """(class, name, why it is broken or ''): a registered name or a class."""
    if isinstance(stage, str):
        from zoo.plugins.stage_registry import canonical_name, registered

        found = registered(include_broken=True)
        stage = canonical_name(stage, found)
        if stage not in found:
            raise StageError(f"unknown stage {stage!r}; registered: {', '.join(sorted(found))}")
        info = found[stage]
        return info.cls, stage, info.broken
    return stage, getattr(stage, "zoo_name", "") or stage.__qualname__, ""


def _require_kit_dependencies() -> None:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise StageError(
            "the conformance kit needs Hypothesis, which is not installed: pip install 'sparkzoo[testing]'"
        ) from None


def run_checks(stage: str | type, spark, *, checks: Iterable[str] = CHECKS, fuzz_examples: int | None = None,
               on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run the conformance checks on one stage (a registered name or a class): one result per check,
    passed or failed, with its time. ``on_result`` sees each result as soon as it is known."""
    import time

    checks = list(checks)
    for check in checks:
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r}; choose from {', '.join(CHECKS)}")
    _require_kit_dependencies()
    cls, name, broken = _resolve(stage)
    results: list[CheckResult] = []

    def report(check: str, started: float, message: str = "", example: int | None = None) -> None:
        result = CheckResult(name, check, not message, time.perf_counter() - started, message, example)
        results.append(result)
        if on_result is not None:
            on_result(result)

    if broken:  # the registry could not use it: that is the one failure to report
        report("construct", time.perf_counter(), broken)
        return results
    n = fuzz_examples if fuzz_examples is not None else int(os.environ.get("ZOO_KIT_FUZZ_EXAMPLES", "10"))
    kit = _Kit(cls, name, spark, n)
    started = time.perf_counter()
    try:
        kit.examples = [_held_in_the_jvm(e) for e in cls.zoo_examples(spark)]
    except Exception as exc:
        report("meta", started, f"zoo_examples(spark) raised {type(exc).__name__}: {exc}")
        return results
    if kit._is_estimator() and "estimator" not in checks and {"persistence", "pickle"} & set(checks):
        try:  # learn whether fits repeat, so the comparisons of two fits mean something
            kit.check_estimator()
        except Exception:
            pass
    examples = kit.examples
    constructed = True
    for check in checks:
        if check not in ("meta", "construct") and not examples:
            continue
        if check == "defaults" and not constructed:
            continue  # needs cls(); the construct failure already says why it cannot be had
        if check == "estimator" and not kit._is_estimator():
            continue
        if check == "streaming" and not getattr(cls, "zoo_streaming", False):
            continue
        if check == "fuzz" and cls.zoo_fuzz_schema() is None:
            continue
        if check == "pickle" and kit.jvm:
            continue  # a py4j handle never travels to executors as a Python object: the JVM does the work
        runs = list(enumerate(examples)) if check in PER_EXAMPLE else [(None, None)]
        jvm_rules = JVM_STAGE.set(kit.jvm)
        for index, example in runs:
            kit.examples = [example] if example is not None else examples
            kit.first_example = index in (None, 0)
            started = time.perf_counter()
            message = ""
            try:
                method = getattr(kit, f"check_{check}", None)
                if method is not None:
                    method()
                else:  # the properties of every correct stage: zoo.testing.properties, one function each
                    getattr(properties, f"check_{check}")(kit)
            except _Fail as exc:
                message = str(exc)
            except Exception as exc:
                message = f"crashed: {type(exc).__name__}: {_essence(exc)}"
            finally:
                if check in ("partitioning", "fuzz", "persistence"):
                    spark.catalog.clearCache()
            if check == "construct" and message:
                constructed = False
            if message and index is not None and len(examples) > 1:
                message = f"example {index}: {message}"
            report(check, started, message, index)
        JVM_STAGE.reset(jvm_rules)
    kit.examples = examples
    return results


def check_stage(stage: str | type, spark, *, checks: Iterable[str] = CHECKS, fuzz_examples: int | None = None) -> list[Failure]:
    """Run the conformance checks on one stage (a registered name or a class); return the failures."""
    return [Failure(r.stage, r.check, r.message)
            for r in run_checks(stage, spark, checks=checks, fuzz_examples=fuzz_examples) if not r.ok]


def assert_conforms(stage: str | type, spark, **kwargs) -> None:
    """Raise AssertionError listing every failed check (see :func:`check_stage`)."""
    failures = check_stage(stage, spark, **kwargs)
    if failures:
        raise AssertionError("conformance failures:\n" + "\n".join(f"  {f}" for f in failures))


def stage_names() -> list[str]:
    """Every registered stage name, broken ones included (what ``zoo check`` runs by default)."""
    from zoo.plugins.stage_registry import registered

    return sorted(registered(include_broken=True))


def check_all(spark, names: Iterable[str] | None = None, **kwargs) -> dict[str, list[Failure]]:
    """Run the kit on every registered stage, broken ones included (or the named ones)."""
    from zoo.plugins.stage_registry import registered

    chosen = list(names) if names else sorted(registered(include_broken=True))
    return {name: check_stage(name, spark, **kwargs) for name in chosen}
