"""The conformance kit: holds every registered stage, ours and third parties', to one standard.

Three lines in a plugin's tests::

    from zoo.testing import assert_conforms

    def test_my_stage_conforms(zoo_spark):          # zoo_spark: fixture of the zoo pytest plugin
        assert_conforms("my_stage", zoo_spark)

Checks (each failure names the stage, the check and, for fuzzing, a minimal reproducing input):

``meta``        the stage has a docstring, a ``zoo_name`` and at least one example
``construct``   ``cls()`` works with no arguments
``params``      every param documented, JSON-serialisable, named like its attribute; setter/getter round trip
``copy``        ``copy()`` is independent of the original
``schema``      ``transformSchema`` equals the schema ``transform`` produces (also on an empty DataFrame)
``unchanged``   ``fit``/``transform`` leave the stage's params as they were
``partitioning``  one partition, many partitions, shuffled rows and a tiny Arrow batch size give the same rows
``fuzz``        Hypothesis-generated inputs (nulls, NaN/inf, extremes, unicode, empty) give the same outcome
                whatever the partitioning, and failures are clean
``bad_input``   a missing or wrongly typed input column raises ``zoo.errors.SchemaError`` (or is not needed)
``persistence`` save / save again fails / overwrite / load restores uid and every param (unset stays
                unset) / same output; also for a fitted model, a one-stage Pipeline and its PipelineModel
``pickle``      the stage survives cloudpickle
``estimator``   ``fit`` returns a Model, and fitting twice gives the same output
``streaming``   for stages that declare ``zoo_streaming = True``: a Structured Streaming query over
                each example (parquet file source, memory sink) gives the batch output, as Spark's
                own ``MLTest.testTransformer`` runs batch and stream
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from zoo.errors import SchemaError, StageError

CHECKS = (
    "meta", "construct", "params", "copy", "schema", "unchanged", "partitioning", "fuzz", "bad_input",
    "persistence", "pickle", "estimator", "streaming",
)


@dataclass(frozen=True)
class Failure:
    """One failed check of one stage."""

    stage: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"[{self.stage}] {self.check}: {self.message}"


class _Fail(Exception):
    pass


# -- comparing outputs -----------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A hashable, NaN-safe, order-comparable form of a collected value."""
    from pyspark.ml.linalg import DenseVector, SparseVector
    from pyspark.sql import Row

    if isinstance(value, (DenseVector, SparseVector)):
        return ("vector", tuple(_plain(float(x)) for x in value.toArray()))
    if isinstance(value, Row):
        return tuple((k, _plain(v)) for k, v in value.asDict(recursive=False).items())
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def rows(df) -> list:
    """The DataFrame's rows as a sorted multiset (order- and partitioning-independent)."""
    return sorted((_plain(r) for r in df.collect()), key=repr)


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", rows(run()))
    except Exception as exc:  # the outcome of a failure is its kind, which must not vary either
        return ("error", type(exc).__name__)


def _schema_str(schema) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


# -- the checks --------------------------------------------------------------------------------------
class _Kit:
    def __init__(self, cls: type, name: str, spark, fuzz_examples: int):
        self.cls, self.name, self.spark, self.fuzz_examples = cls, name, spark, fuzz_examples
        self.examples = []
        self._fitted: dict[tuple[int, int], Any] = {}  # (stage, fit DataFrame) -> model: one fit per pair

    def _is_estimator(self) -> bool:
        from pyspark.ml import Estimator

        return issubclass(self.cls, Estimator)

    def _apply(self, stage, example, df=None):
        df = example.transform_df if df is None else df
        if self._is_estimator():
            # check_estimator proves fitting is repeatable, so the other checks may reuse one fit
            key = (id(stage), id(_fit_df(example)))
            if key not in self._fitted:
                self._fitted[key] = (stage, stage.fit(_fit_df(example)))
            return self._fitted[key][1].transform(df)
        return stage.transform(df)

    def check_meta(self) -> None:
        if not (self.cls.__doc__ or "").strip():
            raise _Fail("the class has no docstring")
        if not getattr(self.cls, "zoo_name", ""):
            raise _Fail("the class has no zoo_name")
        if not self.examples:
            raise _Fail("zoo_examples(spark) returned no examples; the kit needs at least one realistic case")

    def check_construct(self) -> None:
        try:
            self.cls()
        except Exception as exc:
            raise _Fail(f"{self.cls.__qualname__}() fails: {type(exc).__name__}: {exc}") from None

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
                    if getattr(copy, getter.__name__)() != value:
                        raise _Fail(f"param {p.name!r}: the getter does not return what the setter set")

    def check_copy(self) -> None:
        stage = self.examples[0].stage
        before = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
        copy = stage.copy()
        for p in copy.params:
            if copy.isDefined(p) and isinstance(copy.getOrDefault(p), list):
                copy._set(**{p.name: []})
        after = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
        if before != after:
            raise _Fail(f"changing a copy changed the original: {before} -> {after}")

    def check_schema(self) -> None:
        for example in self.examples:
            df = example.transform_df
            stage = example.stage.fit(_fit_df(example)) if self._is_estimator() else example.stage
            declared = _schema_str(stage.transformSchema(df.schema))
            actual = _schema_str(stage.transform(df).schema)
            if declared != actual:
                raise _Fail(f"transformSchema says {declared} but transform produces {actual}")
            empty = self.spark.createDataFrame([], df.schema)
            out = stage.transform(empty)
            if _schema_str(out.schema) != declared or out.count() != 0:
                raise _Fail("an empty input does not give an empty output with the declared schema")

    def check_unchanged(self) -> None:
        for example in self.examples:
            stage = example.stage
            before = {p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None) for p in stage.params}
            self._apply(stage, example).collect()
            after = {p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None) for p in stage.params}
            if before != after:
                raise _Fail(f"fit/transform changed params: {before} -> {after}")

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
                reference = ("ok", rows(self._apply(example.stage, example)))
            except Exception as exc:
                raise _Fail(f"the stage fails on its own example: {type(exc).__name__}: {_essence(exc)}") from None
            with _conf(self.spark, {_AQE_COALESCE: "false"}):
                for label, df in self._variants(example.transform_df).items():
                    if _outcome(lambda: self._apply(example.stage, example, df)) != reference:
                        raise _Fail(f"the output with {label} differs from the output on the example as given")
            with _conf(self.spark, {arrow: "1"}):
                tiny = _outcome(lambda: self._apply(example.stage, example))
            if tiny != reference:
                raise _Fail(f"the output depends on the Arrow batch size ({arrow}=1)")

    def check_fuzz(self) -> None:
        schema = self.cls.zoo_fuzz_schema()
        if schema is None:
            return
        from hypothesis import HealthCheck, given, settings

        from zoo.testing.strategies import rows_for

        example = self.examples[0]
        failing: list[Any] = []

        @settings(max_examples=self.fuzz_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(rows_for(schema))
        def run(data):
            df = self.spark.createDataFrame(data, schema)
            with _conf(self.spark, {_AQE_COALESCE: "false"}):
                outcomes = {label: _outcome(lambda d=d: self._apply(example.stage, example, d)) for label, d in
                            [("as given", df), *self._variants(df).items()]}
            if len({repr(o) for o in outcomes.values()}) > 1:
                failing[:] = [data, outcomes]
                raise AssertionError("outcome depends on partitioning or row order")

        try:
            run()
        except AssertionError:
            data, outcomes = failing
            summary = {k: (v[0], v[1] if v[0] == "error" else f"{len(v[1])} rows") for k, v in outcomes.items()}
            raise _Fail(f"the outcome depends on partitioning or row order; minimal input rows={data!r}: {summary}") from None

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
                    raise _Fail(
                        f"input column {column!r} {label} raised {type(exc).__name__} instead of zoo.errors.SchemaError: "
                        f"{_essence(exc)}"
                    ) from None

    def _roundtrip(self, obj, kind: str, compare_df, loader) -> None:
        path = tempfile.mkdtemp(prefix="zoo-kit-")
        try:
            target = os.path.join(path, "stage")
            obj.save(target)
            try:
                obj.save(target)
            except Exception:
                pass
            else:
                raise _Fail(f"{kind}: a second save() to an existing path did not fail")
            obj.write().overwrite().save(target)
            loaded = loader(target)
            if getattr(loaded, "uid", None) != obj.uid:
                raise _Fail(f"{kind}: load() changed the uid from {obj.uid} to {loaded.uid}")
            for a, b in _stage_pairs(obj, loaded):
                for p in a.params:
                    lp = b.getParam(p.name)
                    if a.isSet(p) != b.isSet(lp):
                        raise _Fail(f"{kind}: param {p.name!r} set={a.isSet(p)} before save, set={b.isSet(lp)} after load")
                    if a.isDefined(p) and a.getOrDefault(p) != b.getOrDefault(lp):
                        raise _Fail(f"{kind}: param {p.name!r} was {a.getOrDefault(p)!r}, loaded {b.getOrDefault(lp)!r}")
            if compare_df is not None and rows(compare_df(obj)) != rows(compare_df(loaded)):
                raise _Fail(f"{kind}: the loaded stage gives different output")
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def check_persistence(self) -> None:
        from pyspark.ml import Pipeline, PipelineModel

        for example in self.examples:
            stage, df = example.stage, example.transform_df
            fit_df = _fit_df(example)
            transform = (lambda s: s.fit(fit_df).transform(df)) if self._is_estimator() else (lambda s: s.transform(df))
            self._roundtrip(stage, "stage", transform, type(stage).load)
            if self._is_estimator():
                model = stage.fit(fit_df)
                self._roundtrip(model, "fitted model", lambda m: m.transform(df), type(model).load)
            pipeline = Pipeline(stages=[stage])
            self._roundtrip(pipeline, "one-stage Pipeline", lambda p: p.fit(fit_df).transform(df), Pipeline.load)
            fitted = pipeline.fit(fit_df)
            self._roundtrip(fitted, "PipelineModel", lambda m: m.transform(df), PipelineModel.load)

    def check_pickle(self) -> None:
        from pyspark import cloudpickle

        for example in self.examples:
            clone = cloudpickle.loads(cloudpickle.dumps(example.stage))
            for a, b in _stage_pairs(example.stage, clone):
                for p in a.params:
                    if a.isDefined(p) and a.getOrDefault(p) != b.getOrDefault(b.getParam(p.name)):
                        raise _Fail(f"param {p.name!r} changed through cloudpickle")
            if rows(self._apply(clone, example)) != rows(self._apply(example.stage, example)):
                raise _Fail("the unpickled stage gives different output")

    def check_streaming(self) -> None:
        import uuid

        if not getattr(self.cls, "zoo_streaming", False):
            return  # the stage does not claim streaming support
        for example in self.examples:
            reference = _outcome(lambda: self._apply(example.stage, example))
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
            first, second = example.stage.fit(fit_df), example.stage.fit(fit_df)
            if not isinstance(first, Model):
                raise _Fail(f"fit returned {type(first).__name__}, not a pyspark.ml.Model")
            if rows(first.transform(example.transform_df)) != rows(second.transform(example.transform_df)):
                raise _Fail("fitting twice on the same data gives different models")


_AQE_COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"  # would merge the empty partitions away


@contextlib.contextmanager
def _conf(spark, values: dict[str, str]):
    """Set SQL confs for the duration of a block, restoring the previous values."""
    previous = {k: spark.conf.get(k, None) for k in values}
    for k, v in values.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in previous.items():
            spark.conf.set(k, v) if v is not None else spark.conf.unset(k)


def _essence(exc: BaseException) -> str:
    """The informative line of an exception: for a Python worker failure, its last error line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Iteration)\b", ln)]
    return (errors[-1] if errors else lines[0] if lines else "")[:300]


def _fit_df(example):
    return example.fit_df if example.fit_df is not None else example.transform_df


def _stage_pairs(a, b):
    """Pair up a stage with its copy, descending into Pipelines and PipelineModels."""
    from pyspark.ml import Pipeline, PipelineModel

    if isinstance(a, Pipeline):
        return [pair for x, y in zip(a.getStages(), b.getStages()) for pair in _stage_pairs(x, y)]
    if isinstance(a, PipelineModel):
        return [pair for x, y in zip(a.stages, b.stages) for pair in _stage_pairs(x, y)]
    return [(a, b)]


def _resolve(stage: str | type) -> tuple[type, str]:
    if isinstance(stage, str):
        from zoo._stage_registry import registered

        found = registered()
        if stage not in found:
            raise StageError(f"unknown stage {stage!r}; registered: {', '.join(sorted(found))}")
        return found[stage].cls, stage
    return stage, getattr(stage, "zoo_name", "") or stage.__qualname__


def check_stage(stage: str | type, spark, *, checks: Iterable[str] = CHECKS, fuzz_examples: int | None = None) -> list[Failure]:
    """Run the conformance checks on one stage (a registered name or a class); return the failures."""
    cls, name = _resolve(stage)
    n = fuzz_examples if fuzz_examples is not None else int(os.environ.get("ZOO_KIT_FUZZ_EXAMPLES", "10"))
    kit = _Kit(cls, name, spark, n)
    failures: list[Failure] = []
    try:
        kit.examples = list(cls.zoo_examples(spark))
    except Exception as exc:
        return [Failure(name, "meta", f"zoo_examples(spark) raised {type(exc).__name__}: {exc}")]
    for check in checks:
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r}; choose from {', '.join(CHECKS)}")
        if check not in ("meta", "construct") and not kit.examples:
            continue
        try:
            getattr(kit, f"check_{check}")()
        except _Fail as exc:
            failures.append(Failure(name, check, str(exc)))
        except Exception as exc:
            failures.append(Failure(name, check, f"crashed: {type(exc).__name__}: {_essence(exc)}"))
        finally:
            if check in ("partitioning", "fuzz", "persistence"):
                spark.catalog.clearCache()
    return failures


def assert_conforms(stage: str | type, spark, **kwargs) -> None:
    """Raise AssertionError listing every failed check (see :func:`check_stage`)."""
    failures = check_stage(stage, spark, **kwargs)
    if failures:
        raise AssertionError("conformance failures:\n" + "\n".join(f"  {f}" for f in failures))


def quiet_spark_logs(spark) -> None:
    """Silence the JVM and PySpark's query-error logger: the kit provokes failures on purpose."""
    import logging

    spark.sparkContext.setLogLevel("FATAL")
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)


def check_all(spark, names: Iterable[str] | None = None, **kwargs) -> dict[str, list[Failure]]:
    """Run the kit on every registered stage (or the named ones)."""
    from zoo._stage_registry import registered

    chosen = list(names) if names else sorted(registered())
    return {name: check_stage(name, spark, **kwargs) for name in chosen}
