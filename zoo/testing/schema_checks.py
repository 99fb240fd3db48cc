"""The checks of a stage's schema: what `transformSchema` declares is what `transform` makes,
the estimator's promise is its model's (`schema`), and a missing or mistyped input is refused
cleanly (`bad_input`)."""

from __future__ import annotations

from zoo.errors import SchemaError
from zoo.plugins.jvm import declared_schema
from zoo.testing.compare import _error_kind, _essence, _Fail, _schema_gap, _schema_str, _schema_text
from zoo.testing.kit import _never_null


def check_schema(kit) -> None:
    for example in kit.examples:
        df = example.transform_df
        stage = kit._model(example.stage, example) if kit._is_estimator() else example.stage
        declared = _schema_str(declared_schema(stage, df.schema))
        transformed = stage.transform(df)
        actual = _schema_str(transformed.schema)
        if kit.jvm:  # Spark's convention, not a lie: a column its UDF fills is nullable however declared
            actual = _never_null(declared, actual, transformed)
        if declared != actual:
            raise _Fail(f"transformSchema says [{_schema_text(declared)}] but transform produces "
                        f"[{_schema_text(actual)}]; they differ in {_schema_gap(declared, actual)}")
        if kit._is_estimator():  # what the estimator promises is what its fitted model makes
            promised = _schema_str(declared_schema(example.stage, df.schema))
            if promised != actual:
                raise _Fail(f"the estimator's transformSchema says [{_schema_text(promised)}] but its fitted "
                            f"model produces [{_schema_text(actual)}]; they differ in "
                            f"{_schema_gap(promised, actual)} (a model built without the estimator's Params: "
                            "copy them, e.g. kit._copyValues(model))")
        empty = kit.spark.createDataFrame([], df.schema)
        out = stage.transform(empty)
        produced = _schema_str(out.schema)
        if kit.jvm:
            produced = _never_null(declared, produced, out)
        if produced != declared or out.count() != 0:
            raise _Fail("an empty input does not give an empty output with the declared schema")


def check_bad_input(kit) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType

    example = kit.examples[0]
    df = example.transform_df
    for column in df.columns:
        variants = [("missing", df.drop(column))]
        if not isinstance(df.schema[column].dataType, BinaryType):  # binary may be what the stage wants
            variants.append(("of type binary", df.withColumn(column, F.lit(b"\x00").cast("binary"))))
        for label, broken in variants:
            try:
                kit._apply(example.stage, example, broken).collect()
            except SchemaError:
                continue
            except Exception as exc:
                if kit.jvm and _error_kind(exc)[1]:
                    continue  # Spark's own refusal (its message is Spark's to word)
                raise _Fail(
                    f"input column {column!r} {label} raised {type(exc).__name__} instead of zoo.errors.SchemaError: "
                    f"{_essence(exc)}"
                ) from None
