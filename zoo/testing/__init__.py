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

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from zoo.errors import StageError
from zoo.log import quiet_spark as quiet_spark_logs  # the kit provokes failures on purpose: keep Spark quiet
from zoo.testing import (
    construction,
    estimators,
    fuzzing,
    persistence,
    properties,
    row_checks,
    schema_checks,
    streaming,
)
from zoo.testing.compare import JVM_STAGE, _essence, _Fail, rows
from zoo.testing.kit import _held_in_the_jvm, _Kit

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


# -- running them -------------------------------------------------------------------------------------
def _check_functions() -> dict[str, Callable[[Any], None]]:
    """Check name -> the function that runs it on a kit: one module per concern."""
    modules = (construction, schema_checks, row_checks, fuzzing, persistence, streaming, estimators, properties)
    found = {name: getattr(m, f"check_{name}") for name in CHECKS for m in modules if hasattr(m, f"check_{name}")}
    if set(found) != set(CHECKS):  # a check named in CHECKS that no module implements
        raise ImportError(f"no function for the checks {sorted(set(CHECKS) - set(found))}")
    return found


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
            estimators.check_estimator(kit)
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
                _CHECK_FUNCTIONS[check](kit)
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


_CHECK_FUNCTIONS = _check_functions()
