"""The `fuzz` check: generated inputs (Hypothesis) under each example's configuration, as given and
scattered over 16 partitions; a crash, a row lost or made, or an outcome that depends on the
layout is reported with the smallest input found in ``SHRINK_SECONDS``."""

from __future__ import annotations

import time
from typing import Any

from zoo.testing import kit as _kit
from zoo.testing.compare import (
    _AQE_COALESCE,
    _collect_together,
    _conf,
    _differs,
    _error_kind,
    _Fail,
    _multiset,
    _outcome,
    _row_policy,
    _rows_problem,
)


def check_fuzz(kit) -> None:
    schema = kit.cls.zoo_fuzz_schema()
    if schema is None:
        return
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from pyspark.sql import functions as F

    from zoo.testing.strategies import rows_for

    examples = kit.examples  # each generated input meets one of the examples' configurations
    failing: list[Any] = []
    found_at: list[float] = []  # when the first failing input was found: shrinking gets _kit.SHRINK_SECONDS

    current = [0]  # the example whose configuration the input being run meets

    def fail(data, problem: str) -> None:
        failing[:] = [data, problem, current[0]]
        found_at[:1] = found_at[:1] or [time.monotonic()]

    @settings(max_examples=kit.fuzz_examples, deadline=None, database=None, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(rows_for(schema), st.integers(0, len(examples) - 1))
    def run(data, which):
        if found_at and time.monotonic() - found_at[0] > _kit.SHRINK_SECONDS:
            return  # shrinking has had its time: every further candidate passes, the smallest so far is told
        example = examples[which]  # drawn, so a failing input shrinks with its configuration
        policy = _row_policy(example.stage)
        current[:] = [which]
        df = kit.spark.createDataFrame(data, schema)
        # as given and one layout against it: rows scattered at random over 16 partitions, some
        # empty (the partitioning check runs every layout on the examples); one job for both when
        # both succeed (the usual case), else each alone so a failure is told apart
        shuffled = df.repartition(16, F.rand(seed=7))
        together = None
        try:  # as given, collected in order: the rows check needs the order, the others the multiset
            out = kit._apply(example.stage, example, df)
            if not failing:  # once an input failed, Hypothesis shrinks it: most candidates fail, run alone
                with _conf(kit.spark, {_AQE_COALESCE: "false"}):
                    together = _collect_together([lambda: out,
                                                  lambda: kit._apply(example.stage, example, shuffled)])
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
            with _conf(kit.spark, {_AQE_COALESCE: "false"}):
                other = _outcome(lambda: kit._apply(example.stage, example, shuffled))
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
