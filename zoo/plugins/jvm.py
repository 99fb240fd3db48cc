"""What sparkzoo knows about JVM-backed stages (Spark's own ``pyspark.ml`` stages, Python handles on
Scala objects): the registry lists them without a SparkContext, the conformance kit applies their
rules, and :mod:`zoo.stages.jvm` (the mixin plugin authors wrap them with) builds on these helpers.
One place, below both, because the kit reaches stages only through the registry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from zoo.errors import SchemaError, essence

if TYPE_CHECKING:
    from pyspark.sql import types as T

__all__ = ["declared_schema", "describe", "defaults_from_the_jvm", "is_jvm_backed", "jvm_transform_schema", "spark_class"]


def is_jvm_backed(stage_or_class: Any) -> bool:
    """Whether a stage (or stage class) is a handle on a Scala object (``pyspark.ml.wrapper.JavaParams``)."""
    from pyspark.ml.wrapper import JavaParams

    cls = stage_or_class if isinstance(stage_or_class, type) else type(stage_or_class)
    return issubclass(cls, JavaParams)


def spark_class(cls: type) -> type:
    """The class of Spark's own that a wrapper extends (the one whose Scala twin does the work)."""
    for base in cls.__mro__:
        if base.__module__.startswith("pyspark.ml.") and base.__module__ != "pyspark.ml.wrapper" and is_jvm_backed(base):
            return base
    raise TypeError(f"{cls.__qualname__} does not extend one of Spark's JVM-backed stages")


def declared_schema(stage: Any, schema: T.StructType) -> T.StructType:
    """The output schema ``stage`` declares for ``schema``: its ``transformSchema``, or for a
    JVM-backed stage without one (a fitted model of Spark's, e.g. ``StringIndexerModel``) the
    Scala stage's own, asked through py4j."""
    own = getattr(stage, "transformSchema", None)
    return own(schema) if own is not None else jvm_transform_schema(stage, schema)


def jvm_transform_schema(stage: Any, schema: T.StructType) -> T.StructType:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise SchemaError(f"{describe(stage)}: a JVM-backed stage needs an active SparkSession to check a schema")
    stage._transfer_params_to_java()
    java_schema = spark._jsparkSession.parseDataType(schema.json())
    try:
        out = stage._java_obj.transformSchema(java_schema)
    except Exception as exc:  # Spark refuses with IllegalArgumentException / AnalysisException
        said = essence(exc) or type(exc).__name__
        inputs = _input_columns(stage)
        if any(c in said for c in inputs):
            inputs = []  # Spark named the column; its messages do not always (Tokenizer: "got binary")
        where = f" (input column{'s' if len(inputs) > 1 else ''} {', '.join(map(repr, inputs))})" if inputs else ""
        raise SchemaError(f"{describe(stage)}: {said}{where}") from None
    from pyspark.sql.types import StructType

    return StructType.fromJson(json.loads(out.json()))


def _input_columns(stage: Any) -> list[str]:
    found = []
    for name in ("inputCol", "inputCols", "featuresCol"):
        if stage.hasParam(name) and stage.isDefined(name):
            value = stage.getOrDefault(name)
            found.extend(value if isinstance(value, list) else [value])
    return found


def describe(stage: Any) -> str:
    name = getattr(stage, "zoo_name", "") or type(stage).__name__
    return f"stage {name} ({stage.uid})"


def defaults_from_the_jvm(stage: Any) -> None:
    """Take the defaults of unset params from the loaded Scala object. PySpark builds the Python
    object first, with a fresh uid, and keeps the defaults it derived from that uid (an unset
    ``outputCol`` of ``OneHotEncoder_5e1...__output``) although the JVM, which does the work, has
    the saved uid's."""
    from pyspark import SparkContext
    from pyspark.ml.common import _java2py

    java = stage._java_obj
    for param in stage.params:
        if stage.isSet(param) or not java.hasParam(param.name):
            continue
        java_param = java.getParam(param.name)
        if java.hasDefault(java_param):
            stage._setDefault(**{param.name: _java2py(SparkContext._active_spark_context, java.getDefault(java_param)).get()})
