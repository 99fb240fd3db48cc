"""What the conformance kit's checks share: comparing outputs (NaN-safe multisets of rows), telling a
clean refusal from a crash, naming the informative line of an exception, and running a block under
other session settings. Plain functions on collected rows and DataFrames; no check lives here."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import math
import re
from typing import Any, Callable

from zoo.errors import essence as _essence

ROW_POLICIES = ("preserve", "reorder", "filter", "expand", "aggregate")


class _Fail(Exception):
    pass


def _plain(value: Any) -> Any:
    """A hashable, NaN-safe, order-comparable form of a collected value."""
    from pyspark.ml.linalg import DenseVector, SparseVector
    from pyspark.sql import Row

    if isinstance(value, (DenseVector, SparseVector)):
        # size and the non-zero entries: equal for a dense and a sparse vector of the same values, and
        # small (a 2^18-wide TF-IDF row as a tuple of every slot cost seconds to build and to repr)
        import numpy as np

        dense = value.toArray()
        nonzero = np.flatnonzero(dense != 0)  # NaN != 0: kept
        return ("vector", len(dense), tuple(zip(nonzero.tolist(), (_plain(v) for v in dense[nonzero].tolist()))))
    if isinstance(value, Row):
        return tuple((k, _plain(v)) for k, v in value.asDict(recursive=False).items())
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, _dt.datetime):
        return value.replace(fold=0)  # equal either way, but repr() shows fold
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as values, NaN equal to NaN (a Param whose default is NaN, such as Imputer's
    ``missingValue``, equals itself), lists and tuples alike, dict order ignored."""
    return _plain(a) == _plain(b)


def rows(df) -> list:
    """The DataFrame's rows as a sorted multiset (order- and partitioning-independent)."""
    return _multiset(df.collect())


def _multiset(collected: list) -> list:
    return sorted((_plain(r) for r in collected), key=repr)


_BRANCH = "__zoo_kit_branch"


def _collect_together(frames: list[Callable[[], Any]]) -> list[list] | None:
    """The collected rows of each DataFrame that ``frames`` build, in order, from one Spark job (a
    union of the frames, each tagged with its position), or None when building or running fails.

    The frames are one stage's output on several layouts of one input, so they share a schema; a
    job per layout costs its planning and scheduling, which on the kit's few rows is most of the
    time. A union fails if any layout fails, so on None the caller runs each alone and every
    failure is told apart as before."""
    from functools import reduce

    from pyspark.sql import Row
    from pyspark.sql import functions as F

    try:
        tagged = [frame().withColumn(_BRANCH, F.lit(i)) for i, frame in enumerate(frames)]
        collected = reduce(lambda a, b: a.union(b), tagged).collect()
    except Exception:
        return None
    branches: list[list] = [[] for _ in frames]
    for r in collected:
        fields = r.__fields__[:-1]  # the tag is the last column; duplicate output names stay as they are
        branches[r[-1]].append(Row(*fields)(*r[:-1]))
    return branches


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", rows(run()))
    except Exception as exc:  # the outcome of a failure is its kind, which must not vary either
        return ("error", _error_kind(exc)[0])


def _error_kind(exc: BaseException) -> tuple[str, bool, str]:
    """(error class name, whether it is a clean refusal, its informative line).

    Clean: a :class:`zoo.errors.ZooError` raised on the driver, one raised in a Python worker
    (Spark wraps it; its last line names ``zoo.errors.X``), or Spark's ``raise_error()`` (error
    class USER_RAISED_EXCEPTION: how a DataFrame-API stage refuses a row, e.g. for
    ``handleInvalid='error'``). Anything else is a crash."""
    from zoo.errors import ZooError

    line = _essence(exc)
    if isinstance(exc, ZooError):
        return type(exc).__name__, True, line
    worker = re.match(r"^zoo\.errors\.(\w+)", line)
    if worker:
        return worker.group(1), True, line
    if "USER_RAISED_EXCEPTION" in str(exc):  # Spark's raise_error(): a refusal the stage wrote on purpose
        return "USER_RAISED_EXCEPTION", True, line
    if JVM_STAGE.get():
        refusal = _jvm_refusal(exc)
        if refusal:
            return refusal, True, line
    named = re.match(r"^([A-Za-z_.]*(?:Error|Exception|Iteration))\b", line)
    return (named.group(1).rsplit(".", 1)[-1] if named else type(exc).__name__), False, line


#: set while the kit checks a JVM-backed stage (zoo.stages.jvm): Spark's own deliberate refusals count as clean
JVM_STAGE: contextvars.ContextVar[bool] = contextvars.ContextVar("zoo_kit_jvm_stage", default=False)

# What the kit holds a wrapped JVM stage to is what its author controls (examples, Params, schema,
# persistence, rows, environment, side effects). The computing is Spark's own Scala code: an
# exception it throws fails the job and loses nothing (``require`` -> IllegalArgumentException,
# handleInvalid="error" -> SparkException "Encountered null ...", the analyser, even a MatchError on
# a null row), so it counts as Spark refusing the input, told by its JVM class.
_JVM_CLASS = re.compile(r"(?<![\w$.])((?:org|java|javax|scala)\.[\w.$]+?(?:Exception|Error))(?=:|\s*$)", re.M)


def _jvm_refusal(exc: BaseException) -> str:
    """The innermost JVM exception class of a failure raised by Spark's JVM; '' for any other failure."""
    text = str(exc)
    named = [m.rsplit(".", 1)[-1].rsplit("$", 1)[-1] for m in _JVM_CLASS.findall(text)
             if not m.startswith("org.apache.spark.api.python")]  # a Python worker's error is Python's
    if "org.apache.spark.api.python.PythonException" in text:
        return ""
    if named:
        return named[-1]
    module = type(exc).__module__  # pyspark's captured form (IllegalArgumentException, AnalysisException, ...)
    return type(exc).__name__ if module.startswith(("pyspark.errors", "py4j")) else ""


def _told(exc: BaseException) -> str:
    """An exception as a report names it: its class and informative line (``IndexError: list index
    out of range``; a JVM error by its own class and message)."""
    kind, _, line = _error_kind(exc)
    if not line:
        return kind
    return line if line.split(":", 1)[0].rsplit(".", 1)[-1] == kind or kind in line.split(":", 1)[0] else f"{kind}: {line}"


def _schema_str(schema) -> list[tuple[str, str, bool]]:
    return [(f.name, f.dataType.simpleString(), f.nullable) for f in schema.fields]


def _schema_text(fields: list[tuple[str, str, bool]]) -> str:
    return ", ".join(f"{n}: {t}{'' if nullable else ' not null'}" for n, t, nullable in fields)


def _row_diff(expected: list, actual: list, limit: int = 3) -> str:
    """The rows only one side has (as multisets), a few of each."""
    from collections import Counter

    def short(text: str) -> str:  # a row of image bytes would fill the screen
        return text if len(text) <= 160 else f"{text[:150]}...({len(text)} chars)"

    want = Counter(r if isinstance(r, str) else repr(r) for r in expected)
    got = Counter(r if isinstance(r, str) else repr(r) for r in actual)
    missing, extra = list((want - got).elements()), list((got - want).elements())
    parts = []
    if missing:
        parts.append(f"{len(missing)} expected row(s) missing, e.g. {'; '.join(map(short, missing[:limit]))}")
    if extra:
        parts.append(f"{len(extra)} unexpected row(s), e.g. {'; '.join(map(short, extra[:limit]))}")
    return " and ".join(parts) or f"the same rows, {len(expected)} vs {len(actual)}"


def _differs(reference: tuple[str, Any], other: tuple[str, Any]) -> str:
    """How two outcomes differ, in words."""
    if reference[0] != other[0] or reference[0] == "error":
        describe = lambda o: f"{len(o[1])} rows" if o[0] == "ok" else f"error {o[1]}"  # noqa: E731
        return f"{describe(reference)} vs {describe(other)}"
    return _row_diff(reference[1], other[1])


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


def _row_policy(stage) -> str:
    """What the configured stage declares about rows (``zoo_row_policy()``, else ``zoo_rows``, else preserve)."""
    method = getattr(stage, "zoo_row_policy", None)
    if callable(method):
        return method()
    return getattr(stage, "zoo_rows", "preserve")


def _rows_problem(policy: str, columns: list[str], input_rows: list, schema, out, ordered: list | None = None) -> str:
    """What is wrong with the output rows under ``policy``, compared on the columns the stage passes
    through unchanged (same name and type), or '' when nothing is.

    ``input_rows``: the input in order (tuples in ``columns`` order); ``ordered``: the output rows in
    order when already collected."""
    from collections import Counter

    kept = [c for c in columns if c in out.columns and out.schema[c].dataType == schema[c].dataType]
    idx = [columns.index(c) for c in kept]
    ins = [repr(_plain(tuple(row[i] for i in idx))) for row in input_rows]
    got = ordered if ordered is not None else out.collect()
    outs = [repr(_plain(tuple(r[c] for c in kept))) for r in got]
    declare = "declare it with zoo_rows (reorder, filter, expand or aggregate)"
    where = f"compared on the columns it keeps ({', '.join(kept)})" if kept else "counted (it keeps no input column)"
    if policy == "preserve":
        if len(outs) != len(ins) or (kept and Counter(outs) != Counter(ins)):
            return (f"{len(ins)} input rows gave {len(outs)} output rows, {where}: {_row_diff(ins, outs)}. "
                    f"Every row must come out once unless the stage says otherwise; {declare}")
        if kept and outs != ins:
            return (f"the rows come out in another order than they went in ({where}); "
                    "a stage that reorders must declare zoo_rows = 'reorder'")
    elif policy == "reorder":
        same_rows = Counter(outs) == Counter(ins) if kept else len(outs) == len(ins)
        if not same_rows:
            return f"declared 'reorder' but rows were lost or added ({where}): {_row_diff(ins, outs)}"
    elif policy == "filter":
        if kept:
            it = iter(ins)
            if not all(any(o == i for i in it) for o in outs):  # a subsequence: a subset, in order
                return f"declared 'filter' but rows were added, changed or reordered ({where}): {_row_diff(ins, outs)}"
        elif len(outs) > len(ins):
            return f"declared 'filter' but {len(ins)} input rows gave {len(outs)}"
    elif policy == "expand":
        lost_any = bool(Counter(ins) - Counter(outs)) if kept else len(outs) < len(ins)
        if lost_any:
            return f"declared 'expand' but input rows were lost ({where}): {_row_diff(ins, outs)}"
    return ""


def _schema_gap(declared: list, actual: list) -> str:
    if [d[0] for d in declared] != [a[0] for a in actual]:
        return "column names or order"
    gaps = []
    for (name, dtype, nullable), (_, atype, anullable) in zip(declared, actual):
        if dtype != atype:
            gaps.append(f"{name} (type {dtype} vs {atype})")
        elif nullable != anullable:
            gaps.append(f"{name} (nullable {nullable} vs {anullable})")
    return ", ".join(gaps)


def _fit_df(example):
    return example.fit_df if example.fit_df is not None else example.transform_df
