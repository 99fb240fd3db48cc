"""Spark's own JVM-backed stages (``pyspark.ml.feature.StringIndexer`` and the like) as zoo stages.

A JVM-backed stage is a thin Python handle on a Scala object: it is built through py4j (so only
where a SparkContext is active), saved and loaded by the JVM, and refuses bad input with Spark's
own exceptions. It is a correct stage all the same, and users want it next to zoo stages under a
short name (``zoo.stage("string_indexer")``) and held to the conformance kit. Wrap one by
subclassing it together with :class:`JvmStage`::

    from pyspark.ml.feature import StringIndexer
    from zoo.stages.jvm import JvmStage

    class CategoryIndexer(JvmStage, StringIndexer):
        \"\"\"Spark's StringIndexer, registered as a zoo stage.\"\"\"
        zoo_name = "string_indexer"

        @classmethod
        def zoo_examples(cls, spark):
            ...

What the mixin adds, and why each is needed:

* ``read()``/``load()``: Spark's reader finds the Scala class from the Python *module path*, which
  for a subclass in a plugin module names no Scala class; the mixin reads through the Spark class
  the stage extends and returns an instance of the subclass (same uid, same params);
* ``transformSchema``: the Scala stage's own, with its refusals raised as
  :class:`zoo.errors.SchemaError` naming the stage;
* registration without a SparkContext: ``zoo stages`` describes the class from its Params (the
  defaults are the JVM's, known once a session is running).

* ``transform``/``fit`` check the input schema first, so a bad input is refused on the driver with
  :class:`zoo.errors.SchemaError` naming the stage and its input columns, like every zoo stage.

What the conformance kit holds such a stage to (``docs/plugins.md``, "Wrapping Spark's stages") is
what its author controls: examples, Params (NaN defaults included), schema, persistence, rows,
partitioning, environment, independence, collisions, side effects. The computing is Spark's own
Scala code, so (1) the stage is not pickled (a py4j handle never travels to executors), (2) an
exception from the JVM counts as Spark refusing the input (``require`` ->
``IllegalArgumentException``, ``handleInvalid="error"`` -> ``SparkException: Encountered null``; the
job fails and loses nothing), reported by its JVM class, and (3) a column Spark fills through a
UDF is nullable in the output schema whatever ``transformSchema`` declares, which the kit accepts
while the column holds no null.
"""

from __future__ import annotations

from typing import ClassVar

from pyspark.sql import types as T

from zoo.plugins.jvm import defaults_from_the_jvm, describe, jvm_transform_schema, spark_class
from zoo.stages.base import ZooStage

__all__ = ["JvmStage"]


class _AdoptingReader:
    """Spark's reader for the wrapped Scala class, giving back an instance of the wrapper."""

    def __init__(self, cls: type):
        from pyspark.ml.util import JavaMLReader

        self._cls = cls
        self._reader = JavaMLReader(spark_class(cls))

    def session(self, spark) -> "_AdoptingReader":
        self._reader.session(spark)
        return self

    def load(self, path: str):
        stage = self._reader.load(path)
        # The wrapper adds no state of its own (a mixin and class attributes), so the loaded
        # instance of Spark's class becomes one of the wrapper as it is: same handle, uid, params.
        stage.__class__ = self._cls
        defaults_from_the_jvm(stage)
        return stage


class JvmStage(ZooStage):
    """Mixin that makes a subclass of one of Spark's JVM-backed stages a zoo stage (module docstring)."""

    zoo_jvm: ClassVar[bool] = True

    @classmethod
    def read(cls) -> _AdoptingReader:
        return _AdoptingReader(cls)

    @classmethod
    def load(cls, path: str):
        return cls.read().load(path)

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802 - SparkML name
        return jvm_transform_schema(self, schema)

    def _describe(self) -> str:
        return describe(self)

    # the input is checked first, so that a bad one is refused with SchemaError naming the stage and column
    def _transform(self, dataset):
        self.transformSchema(dataset.schema)
        return super()._transform(dataset)

    def _fit(self, dataset):
        self.transformSchema(dataset.schema)
        return super()._fit(dataset)
