"""The checks of what a stage does to rows: Params unchanged by running it (`unchanged`), every
row as `zoo_rows` declares (`rows`), the same output whatever the partitioning (`partitioning`)."""

from __future__ import annotations

from zoo.testing.compare import (
    _AQE_COALESCE,
    _collect_together,
    _conf,
    _differs,
    _essence,
    _Fail,
    _multiset,
    _outcome,
    _row_policy,
    _rows_problem,
    _same,
)


def check_unchanged(kit) -> None:
    import copy as _copy

    for example in kit.examples:
        stage = example.stage
        # deep copies: a list param mutated in place would otherwise compare equal to itself
        before = _copy.deepcopy({p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None)
                                 for p in stage.params})
        kit._run_as_given(stage, example)  # always run here
        after = {p.name: (stage.isSet(p), stage.getOrDefault(p) if stage.isDefined(p) else None) for p in stage.params}
        changed = {k: (before[k][1], after[k][1]) for k in before if not _same(before[k], after.get(k))}
        if changed:
            detail = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise _Fail(f"fit/transform changed params ({detail}); a stage must not modify its params, "
                        "not even a list or dict value in place")


def check_rows(kit) -> None:
    for example in kit.examples:
        policy = _row_policy(example.stage)
        if policy == "aggregate":
            continue
        df = example.transform_df
        try:
            out = kit._apply(example.stage, example)
            ordered = kit._given_in_order.get(id(example))  # the unchanged check ran it already
            if ordered is None:
                ordered = out.collect()
        except Exception as exc:
            raise _Fail(f"the stage fails on its own example: {_essence(exc)}") from None
        problem = _rows_problem(policy, df.columns, [tuple(r) for r in df.collect()], df.schema, out,
                                ordered=ordered)
        if problem:
            raise _Fail(problem)


def _variants(kit, df):
    from pyspark.sql import functions as F

    return {
        "one partition": df.repartition(1),
        "16 partitions, some empty": df.repartition(16),
        "shuffled": df.orderBy(F.rand(seed=7)).repartition(3),
    }


def check_partitioning(kit) -> None:
    arrow = "spark.sql.execution.arrow.maxRecordsPerBatch"
    for example in kit.examples:
        try:
            reference = ("ok", kit._given_rows(example))
        except Exception as exc:
            raise _Fail(f"the stage fails on its own example: {type(exc).__name__}: {_essence(exc)}") from None
        with _conf(kit.spark, {_AQE_COALESCE: "false"}):
            variants = _variants(kit, example.transform_df)
            together = _collect_together([lambda df=df: kit._apply(example.stage, example, df)
                                          for df in variants.values()])
            for i, (label, df) in enumerate(variants.items()):
                other = (("ok", _multiset(together[i])) if together is not None
                         else _outcome(lambda: kit._apply(example.stage, example, df)))
                if other != reference:
                    raise _Fail(f"the output with {label} differs from the output on the example as given: "
                                f"{_differs(reference, other)}")
        with _conf(kit.spark, {arrow: "1"}):
            tiny = _outcome(lambda: kit._apply(example.stage, example))
        if tiny != reference:
            raise _Fail(f"the output depends on the Arrow batch size ({arrow}=1): {_differs(reference, tiny)}")
