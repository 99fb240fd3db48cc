"""Base classes every sparkzoo stage (ours and third parties') builds on.

They are plain ``pyspark.ml`` Transformers / Estimators written in Python: Params with docs and
type converters, ``keyword_only`` constructors, ``DefaultParamsReadable/Writable`` persistence,
and only the DataFrame API inside ``_transform`` (no ``_jvm``), so stages also run on Spark Connect.

Each class declares:

* ``zoo_name`` - its unique short name in the stage registry (``zoo.stage("sql", ...)``);
* ``transformSchema`` - the output schema, raising :class:`zoo.errors.SchemaError` on bad input;
* ``zoo_examples(spark)`` - realistic (stage, fit DataFrame, transform DataFrame) examples the
  conformance kit runs; ``zoo_fuzz_schema()`` - the input columns the kit may generate freely;
* ``zoo_rows`` - what it does to rows (default ``preserve``: every input row once, in order), which
  the kit holds it to.

Every param of a stage class gets ``getX``/``setX`` generated where the class does not define them
(declare params with :func:`zoo.stages.params.param`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from pyspark.ml import Estimator, Model, Transformer
from pyspark.ml.param import Param
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from zoo.errors import SchemaError

NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass(frozen=True)
class StageExample:
    """A stage configured for a realistic case, with the data to fit it on and to transform."""

    stage: "ZooStage"
    transform_df: DataFrame
    fit_df: DataFrame | None = None


def _accessors(name: str, doc: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def getter(self):
        return self.getOrDefault(name)

    def setter(self, value):
        return self._set(**{name: value})

    cap = name[0].upper() + name[1:]
    getter.__name__, getter.__doc__ = f"get{cap}", f"The value of ``{name}``: {doc}."
    setter.__name__, setter.__doc__ = f"set{cap}", f"Set ``{name}``: {doc}. Returns the stage."
    return getter, setter


class ZooStage:
    """Mixin with what the registry and the conformance kit need from every stage."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Generate ``getX``/``setX`` for every param the class (or a mixin) declares and does not
        already have accessors for: the SparkML convention, without hand-written boilerplate."""
        super().__init_subclass__(**kwargs)
        for attr in dir(cls):
            value = getattr(cls, attr, None)
            if not isinstance(value, Param):
                continue
            getter, setter = _accessors(value.name, value.doc)
            for method in (getter, setter):
                if not hasattr(cls, method.__name__):
                    method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
                    setattr(cls, method.__name__, method)

    zoo_name: ClassVar[str] = ""
    #: Names the stage had in earlier versions: ``zoo.stage(old_name)`` still builds it, with a warning.
    zoo_former_names: ClassVar[tuple[str, ...]] = ()
    #: What the stage does to rows, checked by the conformance kit: ``preserve`` (every input row
    #: comes out once, in order), ``reorder`` (once each, any order), ``filter`` (a subset, in
    #: order), ``expand`` (every input row, plus new ones) or ``aggregate`` (new rows).
    zoo_rows: ClassVar[str] = "preserve"
    #: Whether a row's output depends on that row alone (the kit transforms rows one at a time and
    #: compares); None means "unless zoo_rows is aggregate". A stage that averages over a group, or
    #: ranks rows against each other, says False.
    zoo_independent_rows: ClassVar[bool | None] = None
    #: Whether the stage, by design, writes over an input column named like its output (the kit
    #: otherwise wants such an input refused with SchemaError). Say so in the docstring too.
    zoo_replaces_output: ClassVar[bool] = False

    def zoo_row_policy(self) -> str:
        """``zoo_rows`` for this configured instance: ``handleInvalid='skip'`` makes any stage a filter."""
        if self.hasParam("handleInvalid") and self.isDefined("handleInvalid") \
                and self.getOrDefault("handleInvalid") == "skip":
            return "filter"
        return self.zoo_rows

    @classmethod
    def zoo_examples(cls, spark: SparkSession) -> list[StageExample]:
        """Realistic examples for the conformance kit. Every registered stage must provide one."""
        return []

    @classmethod
    def zoo_fuzz_schema(cls) -> T.StructType | None:
        """Input columns the kit may fill with generated values (None: examples only)."""
        return None

    #: set on a stage that another one runs on its behalf (image_classifier's featurizer), so that errors,
    #: from the driver and from the executors' rows alike, name the stage the user made
    _described_as: str | None = None

    def _describe(self) -> str:
        return self._described_as or f"stage {self.zoo_name or type(self).__name__} ({self.uid})"

    # -- schema helpers shared by stages (public: plugin authors use them too) -----------------
    def require_column(self, schema: T.StructType, name: str, expected: str, accept=None) -> T.StructField:
        """The field ``name``; SchemaError if it is missing or (with ``accept``) of the wrong type."""
        if name not in schema.fieldNames():
            raise SchemaError(
                f"{self._describe()}: input column {name!r} is missing; expected {expected}. "
                f"Available columns: {', '.join(schema.fieldNames()) or '(none)'}"
            )
        field = schema[name]
        if accept is not None and not accept(field.dataType):
            raise SchemaError(
                f"{self._describe()}: input column {name!r} has type {field.dataType.simpleString()}; expected {expected}"
            )
        return field

    def require_new_column(self, schema: T.StructType, name: str) -> None:
        """SchemaError if ``name`` already exists in the input (an output column must be new)."""
        if name in schema.fieldNames():
            raise SchemaError(
                f"{self._describe()}: output column {name!r} already exists in the input; choose another outputCol"
            )

    _require_column = require_column  # the names sparkzoo's own stages have always used
    _require_new_column = require_new_column


class _ValidatedTransform:
    """``_transform`` that checks the input schema (``transformSchema``) before ``_apply``."""

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802 - SparkML name
        raise NotImplementedError

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self.transformSchema(dataset.schema)
        return self._apply(dataset)

    def _apply(self, dataset: DataFrame) -> DataFrame:
        raise NotImplementedError


class ZooTransformer(_ValidatedTransform, Transformer, ZooStage, DefaultParamsReadable, DefaultParamsWritable):
    """A Transformer whose ``transform`` validates the input schema before doing anything."""


class ZooEstimator(Estimator, ZooStage, DefaultParamsReadable, DefaultParamsWritable):
    """An Estimator whose ``fit`` validates the input schema first."""

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        raise NotImplementedError

    def _fit(self, dataset: DataFrame) -> Model:
        self.transformSchema(dataset.schema)
        return self._fit_validated(dataset)

    def _fit_validated(self, dataset: DataFrame) -> Model:
        raise NotImplementedError


class ZooModel(_ValidatedTransform, Model, ZooStage, DefaultParamsReadable, DefaultParamsWritable):
    """A fitted model; same contract as :class:`ZooTransformer`."""


def is_numeric(t: T.DataType) -> bool:
    return isinstance(t, NUMERIC_TYPES)
