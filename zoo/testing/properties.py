"""Properties every correct stage has, whatever it computes: the kit's checks of defect *classes*.

Each check here states a property that holds for a correct stage and derives its inputs from the
stage's own examples, so it needs nothing written for it and catches every instance of the class:

``environment``  the output does not change under session settings that must not matter: another
                 time zone (UTC+14), ANSI mode flipped, Arrow for pandas UDFs flipped, another
                 number of shuffle partitions, the JVM's default locale (Turkish) (a difference is
                 then narrowed to the settings that cause it);
``independence`` for a stage whose rows are independent (``zoo_independent_rows``, true by default
                 unless ``zoo_rows`` is ``aggregate``), each row transformed alone gives what it
                 gives in the whole frame: no statistic of the frame being transformed;
``fit_hostile``  an estimator fitted on an empty frame, all-null columns, one row, or a constant
                 column refuses cleanly (a ``zoo.errors`` error, Spark's own refusal) or returns a
                 model that transforms the example without crashing;
``collision``    an input that already has a column named like an output is refused with
                 ``SchemaError``, unless the stage declares ``zoo_replaces_output = True``;
``types``        every type of Spark SQL that ``transformSchema`` accepts for an input column
                 (decimal, date, timestamp, timestamp_ntz, arrays, maps, structs, vectors, ...)
                 transforms without crashing;
``side_effects`` fit and transform leave the caller's DataFrame as it was: cached stays cached (at
                 the same storage level), same schema, same column metadata.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
from typing import Any

from zoo.testing.compare import (
    _collect_together,
    _conf,
    _differs,
    _error_kind,
    _Fail,
    _fit_df,
    _outcome,
    _row_policy,
    _told,
)

#: the JVM default locale the environment check also runs under: Turkish, the classic trap
#: ("TITLE".toLowerCase() is "tıtle"; 1.5 is written 1,5)
OTHER_LOCALE = "tr-TR"


def environment_variants(spark) -> dict[str, str]:
    """The other value of each setting that must not matter (against the session's current one)."""
    tz = spark.conf.get("spark.sql.session.timeZone", "UTC")
    flip = lambda key, default: "false" if spark.conf.get(key, default).lower() == "true" else "true"  # noqa: E731
    shuffle = spark.conf.get("spark.sql.shuffle.partitions", "200")
    return {
        "spark.sql.session.timeZone": "America/St_Johns" if tz == "Pacific/Kiritimati" else "Pacific/Kiritimati",
        "spark.sql.ansi.enabled": flip("spark.sql.ansi.enabled", "true"),
        "spark.sql.execution.arrow.pyspark.enabled": flip("spark.sql.execution.arrow.pyspark.enabled", "false"),
        "spark.sql.shuffle.partitions": "3" if shuffle != "3" else "7",
    }


@contextlib.contextmanager
def _jvm_locale(spark, tag: str):
    """The JVM's default locale set to ``tag`` for a block (Turkish: "I".lower() is not "i"; German
    writes 1,5). In local mode the executors run in that JVM; on a cluster or Spark Connect the
    variant is not applied (nothing to reach), and the block runs as is."""
    jvm = getattr(spark.sparkContext, "_jvm", None) if not _is_remote(spark) else None
    if jvm is None:
        yield
        return
    locale = jvm.java.util.Locale
    previous = locale.getDefault()
    locale.setDefault(locale.forLanguageTag(tag))
    try:
        yield
    finally:
        locale.setDefault(previous)


def _is_remote(spark) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _varied(kit, confs: dict[str, str], locale: str | None):
    """A block run with the given session settings and (when not None) JVM default locale."""
    stack = contextlib.ExitStack()
    stack.enter_context(_conf(kit.spark, confs))
    if locale:
        stack.enter_context(_jvm_locale(kit.spark, locale))
    return stack


def check_environment(kit) -> None:
    for example in kit.examples[:1]:  # one run per variant is a whole transform: the first example speaks for all
        reference = kit._as_given(example)
        variants = environment_variants(kit.spark)
        # a JVM-backed stage's locale is Spark's Scala code's (Spark's Tokenizer lower-cases "I" to "ı"
        # under tr-TR): not the wrapper author's to fix, so not held against the wrapper (docs/plugins.md)
        locale = None if kit.jvm else OTHER_LOCALE
        with _varied(kit, variants, locale):
            other = _outcome(lambda: kit._apply(example.stage, example))
        if other == reference:
            continue
        culprits = []
        singles = [({key: value}, None, f"{key}={value}") for key, value in variants.items()]
        if locale:
            singles.append(({}, locale, f"JVM default locale={locale}"))
        for confs, one_locale, label in singles:
            with _varied(kit, confs, one_locale):  # narrow the difference down (only when there is one)
                if _outcome(lambda: kit._apply(example.stage, example)) != reference:
                    culprits.append(label)
        said = ", ".join(culprits) or "only all of " + ", ".join(f"{k}={v}" for k, v in variants.items())
        raise _Fail(f"the output depends on session settings that must not matter ({said}): "
                    f"{_differs(reference, other)}; compute in fixed terms (e.g. to_utc_timestamp, explicit "
                    "casts, Locale.ROOT) rather than the session's")


def _independent(stage) -> bool:
    declared = getattr(stage, "zoo_independent_rows", None)
    return declared if declared is not None else _row_policy(stage) != "aggregate"


def check_independence(kit) -> None:
    from zoo.testing.compare import _multiset, _row_diff

    for example in kit.examples[:1]:  # the first example: its rows, each alone, against them together
        if not _independent(example.stage):
            continue
        df = example.transform_df
        reference = kit._as_given(example)
        if reference[0] != "ok":
            continue  # the example fails as a whole by design: the other checks say what they see
        picked = df.limit(4).collect()  # a few rows, each then a frame of its own (one partition each)
        frame = lambda rows: kit.spark.createDataFrame(rows, df.schema)  # noqa: E731
        singles = [lambda r=r: kit._apply(example.stage, example, frame([r])) for r in picked]
        whole = lambda: kit._apply(example.stage, example, frame(picked))  # noqa: E731
        together = _collect_together([whole, *singles])
        if together is None:  # something failed: run each alone to say which
            outcomes = [_outcome(f) for f in [whole, *singles]]
            if any(o[0] != "ok" for o in outcomes):
                if outcomes[0][0] != "ok":
                    raise _Fail(f"the example's first {len(picked)} rows fail together ({outcomes[0][1]}) where the "
                                "whole example does not: the output of a row depends on the other rows of the frame")
                alone = next(i for i, o in enumerate(outcomes[1:]) if o[0] != "ok")
                raise _Fail(f"row {alone} transformed alone fails ({outcomes[alone + 1][1]}) where it does not in its "
                            f"frame: {_DEPENDS}")
            together = [o[1] for o in outcomes]
            combined = sorted((r for part in together[1:] for r in part), key=repr)
            whole_rows = together[0]
        else:
            whole_rows = _multiset(together[0])
            combined = sorted((r for part in together[1:] for r in _multiset(part)), key=repr)
        if combined != whole_rows:
            raise _Fail(f"rows transformed one at a time differ from the same rows transformed together "
                        f"({_row_diff(whole_rows, combined)}): {_DEPENDS}")


_DEPENDS = ("the output of a row depends on the other rows of the frame (a min, max, mean or count of the frame "
            "being transformed?). Learn such statistics in fit, or declare zoo_independent_rows = False")


def _hostile_fits(df) -> dict[str, Any]:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    constant = df
    for f in df.schema.fields:
        if isinstance(f.dataType, (T.NumericType, T.StringType, T.BooleanType)):
            first = df.select(f.name).where(F.col(f.name).isNotNull()).limit(1).collect()
            if first:
                constant = constant.withColumn(f.name, F.lit(first[0][0]).cast(f.dataType))
    return {
        "an empty frame": df.limit(0),
        "all-null columns": df.select(*[F.lit(None).cast(f.dataType).alias(f.name) for f in df.schema.fields]),
        "one row": df.limit(1),
        "a constant column": constant,
    }


def check_fit_hostile(kit) -> None:
    if not kit._is_estimator():
        return
    example = kit.examples[0]
    for label, data in _hostile_fits(_fit_df(example)).items():
        try:
            model = example.stage.fit(data)
        except Exception as exc:
            if not _error_kind(exc)[1]:
                raise _Fail(f"fit on {label} crashed with {_told(exc)}; refuse such data with a zoo.errors "
                            "error naming the column, or fit a model that can transform") from None
            continue
        try:
            model.transform(example.transform_df.limit(3)).collect()
        except Exception as exc:
            if not _error_kind(exc)[1]:
                raise _Fail(f"the model fitted on {label} crashes on the example: {_told(exc)}") from None


def check_collision(kit) -> None:
    from pyspark.sql import functions as F

    from zoo.errors import SchemaError

    example = kit.examples[0]
    stage = example.stage
    if getattr(stage, "zoo_replaces_output", False):
        return
    df = example.transform_df
    applied = kit._model(stage, example) if kit._is_estimator() else stage
    try:
        declared = applied.transformSchema(df.schema)
    except Exception:
        return  # the schema check says what is wrong
    outputs = [f.name for f in declared.fields if f.name not in df.columns]
    for name in outputs:
        clashing = df.withColumn(name, F.lit("zoo-kit: already here"))
        try:
            kit._apply(stage, example, clashing).collect()
        except SchemaError:
            continue
        except Exception as exc:
            kind, clean, line = _error_kind(exc)
            if clean or "already exists" in str(exc).lower() or name in line:
                continue  # a refusal that names the column (Spark's own stages raise their own exception)
            raise _Fail(f"an input that already has a column {name!r} (its output) crashed with {_told(exc)}; "
                        "refuse it with zoo.errors.SchemaError") from None
        raise _Fail(f"an input that already has a column {name!r} is transformed without a word: the stage's output "
                    "silently replaces the caller's column. Refuse it with zoo.errors.SchemaError (require_new_column), "
                    "or declare zoo_replaces_output = True and document it")


def _samples():
    """(type, one non-null value of it) for every kind of type a schema check could accept."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T

    return [
        (T.StringType(), "1.5"), (T.BinaryType(), b"\x01"), (T.BooleanType(), True), (T.ByteType(), 3),
        (T.ShortType(), 3), (T.IntegerType(), 3), (T.LongType(), 3), (T.FloatType(), 1.5), (T.DoubleType(), 1.5),
        (T.DecimalType(10, 2), decimal.Decimal("1.50")), (T.DateType(), _dt.date(2020, 1, 2)),
        (T.TimestampType(), _dt.datetime(2020, 1, 2, 3, 4, 5)), (T.TimestampNTZType(), _dt.datetime(2020, 1, 2, 3, 4, 5)),
        (T.ArrayType(T.DoubleType()), [1.5, 2.5]), (T.ArrayType(T.StringType()), ["a", "b"]),
        (T.MapType(T.StringType(), T.DoubleType()), {"a": 1.5}),
        (T.StructType([T.StructField("a", T.DoubleType())]), (1.5,)), (VectorUDT(), Vectors.dense([1.5, 2.5])),
    ]


def check_types(kit) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    example = kit.examples[0]
    df = example.transform_df
    applied = kit._model(example.stage, example) if kit._is_estimator() else example.stage
    few = df.limit(2)
    accepted = []  # (column, type, the transformed frame reduced to one JSON string per row)
    tried: set[str] = set()  # each type once, in the first column that accepts it: a type the code
    for column in df.columns:  # cannot handle fails wherever it goes, and every variant is a transform
        for dtype, value in _samples():
            if df.schema[column].dataType == dtype or dtype.simpleString() in tried:
                continue
            schema = T.StructType([T.StructField(f.name, dtype if f.name == column else f.dataType, True)
                                   for f in df.schema.fields])
            try:
                declared = applied.transformSchema(schema)
            except Exception:
                continue  # refused: what the schema check is for
            literal = kit.spark.createDataFrame([(value,)], T.StructType([T.StructField("v", dtype)]))
            changed = few.drop(column).crossJoin(literal.withColumnRenamed("v", column)).select(*df.columns)
            tried.add(dtype.simpleString())
            made = [f"`{f.name}`" for f in declared.fields if f.name not in df.columns] or ["*"]
            accepted.append((column, dtype, lambda changed=changed, made=made: kit._apply(
                example.stage, example, changed).select(F.to_json(F.struct(*made)).alias("row"))))
    # one job for every accepted variant (only "no crash" matters, so each is reduced to JSON strings);
    # when it fails, each alone says which
    if not accepted or _collect_together([frame for _, _, frame in accepted]) is not None:
        return
    for column, dtype, frame in accepted:
        try:
            frame().collect()
        except Exception as exc:
            if _error_kind(exc)[1] or "SQLSTATE: 22" in str(exc):  # or Spark refusing the value itself
                continue
            raise _Fail(f"transformSchema accepts input column {column!r} of type {dtype.simpleString()}, but "
                        f"transform then crashes with {_told(exc)}: accept only what transform handles") from None


def _state(df) -> tuple:
    level = df.storageLevel
    return (df.is_cached, str(level), df.schema.json())


def check_side_effects(kit) -> None:
    example = kit.examples[0]
    stage = example.stage
    steps = [("transform", example.transform_df, lambda df: kit._apply(stage, example, df).collect())]
    if kit._is_estimator():
        steps.insert(0, ("fit", _fit_df(example), stage.fit))
    for label, frame, run in steps:
        mine = frame.select("*")  # the caller's own DataFrame, which the caller has cached
        mine.cache()
        mine.count()
        before = _state(mine)
        try:
            run(mine)
        except Exception as exc:
            if not _error_kind(exc)[1]:
                raise _Fail(f"{label} on a cached copy of the example failed: {_told(exc)}") from None
            continue
        finally:
            after = _state(mine)
            mine.unpersist()
        if after != before:
            what = ("its cache (it was cached, now it is not)" if before[0] and not after[0] else
                    f"its storage level ({before[1]} -> {after[1]})" if before[1] != after[1] else "its schema or metadata")
            raise _Fail(f"{label} changed the caller's DataFrame: {what}. A stage may cache what it makes, never "
                        "unpersist or alter what it is given")
