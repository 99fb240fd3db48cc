"""``vector_assembler``: many numeric, boolean, vector and array columns into one ML vector.

Built for wide deep-feature arrays: everything happens in generated JVM code (``concat`` of double
arrays, then sparkzoo's ``dense_vector``, which wraps the array without boxing its elements; see
``zoo.runtime.jvm_functions``), with no Python UDF and no per-element builder.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCols, HasOutputCol
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer, is_numeric
from zoo.stages.params import HasAllowMixedProvenance, HasHandleInvalid

from zoo import lineage
from zoo.errors import StageError
from zoo.runtime.jvm_functions import to_vector

EXPECTED = "a numeric, boolean, vector or array<numeric> column"
_FUZZ = T.StructType(
    [
        T.StructField("x", T.DoubleType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("arr", T.ArrayType(T.FloatType())),
    ]
)


def _kind(t: T.DataType) -> str | None:
    if isinstance(t, VectorUDT):
        return "vector"
    if isinstance(t, T.ArrayType) and (is_numeric(t.elementType) or isinstance(t.elementType, T.BooleanType)):
        return "array"
    if is_numeric(t) or isinstance(t, T.BooleanType):
        return "scalar"
    return None


class VectorAssembler(ZooTransformer, HasInputCols, HasOutputCol, HasHandleInvalid, HasAllowMixedProvenance):
    """Concatenate ``inputCols`` into the vector column ``outputCol``.

    ``handleInvalid`` decides what a null or NaN does: ``error`` (default) fails naming the
    columns, ``skip`` drops the row, ``keep`` turns null scalars and null array elements into NaN
    (a whole null array or vector still fails: its length is unknown).

    The output carries the ML attributes SparkML learners read, as Spark's own VectorAssembler
    writes them (a numeric attribute per scalar, an input vector's attributes kept with the column's
    name in front: a OneHotEncoder's binary slots stay categorical for tree learners), whenever
    every input's width is known from its metadata. Feature columns whose provenance
    (:mod:`zoo.lineage`) says they come from different models, cuts or preprocessing are refused,
    unless ``allowMixedProvenance``.
    """

    zoo_name = "vector_assembler"
    zoo_streaming = True  # checked by the kit's streaming check

    @keyword_only
    def __init__(self, *, inputCols: list[str] | None = None, outputCol: str | None = None, handleInvalid: str | None = None,
                 allowMixedProvenance: bool | None = None):
        super().__init__()
        self._setDefault(inputCols=[], outputCol="features")
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        self._check_handle_invalid()
        if not self.getInputCols():
            raise StageError(f"{self._describe()}: inputCols is empty")
        for c in self.getInputCols():
            self.require_column(schema, c, EXPECTED, accept=lambda t: _kind(t) is not None)
        self.require_new_column(schema, self.getOutputCol())
        self._check_provenance(schema)
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])

    def _parts(self, schema: T.StructType) -> tuple[list[Column], list[tuple[str, Column]], list[tuple[str, Column]]]:
        """(double-array pieces, per-column 'has null/NaN' tests, per-column 'is wholly null' tests)."""
        keep = self.getHandleInvalid() == "keep"
        nan = F.lit(float("nan"))
        pieces, invalid, whole_null = [], [], []
        for name in self.getInputCols():
            col = F.col(f"`{name}`")
            kind = _kind(schema[name].dataType)
            if kind == "scalar":
                value = col.cast("double")
                invalid.append((name, value.isNull() | F.isnan(value)))
                pieces.append(F.array(F.coalesce(value, nan) if keep else value))
                continue
            arr = vector_to_array(col) if kind == "vector" else col.cast("array<double>")
            # One code-generated pass (higher-order functions such as `exists` are interpreted, row by
            # row): arrays_overlap with [NaN] is true when the array holds a NaN (Spark SQL treats
            # NaN as equal to NaN), null when it holds a null element, false when it is clean.
            has_null_or_nan = F.coalesce(F.arrays_overlap(arr, F.array(nan)), F.lit(True))
            invalid.append((name, arr.isNull() | has_null_or_nan))
            whole_null.append((name, arr.isNull()))
            pieces.append(F.transform(arr, lambda x: F.coalesce(x, nan)) if keep else arr)
        return pieces, invalid, whole_null

    def _check_provenance(self, schema: T.StructType) -> None:
        if self.getAllowMixedProvenance():
            return
        made = [(c, lineage.of(schema, c)) for c in self.getInputCols()]
        made = [(c, m) for c, m in made if m and "model_sha256" in m]
        for c, m in made[1:]:
            why = lineage.conflict(made[0][1], m)
            if why:
                raise StageError(f"{self._describe()}: columns {made[0][0]!r} and {c!r} were made differently ({why}); "
                                 "their features are not comparable. Set allowMixedProvenance=True to assemble them "
                                 "anyway")

    def _metadata(self, schema: T.StructType) -> dict:
        """The output's metadata: ML attributes (when every width is known) and the inputs' provenance."""
        attrs: dict[str, list] = {}
        index = 0
        for name in self.getInputCols():
            field = schema[name]
            kind = _kind(field.dataType)
            if kind == "scalar":
                attrs.setdefault("numeric", []).append({"idx": index, "name": name})
                index += 1
                continue
            ml = field.metadata.get("ml_attr") or {}
            if ml.get("attrs"):
                for group, items in ml["attrs"].items():
                    for item in items:
                        label = item.get("name", str(item["idx"]))
                        attrs.setdefault(group, []).append({**item, "idx": index + item["idx"], "name": f"{name}_{label}"})
                index += ml.get("num_attrs") or 1 + max(i["idx"] for items in ml["attrs"].values() for i in items)
                continue
            width = ml.get("num_attrs") or (lineage.of(schema, name) or {}).get("width")
            if not width:
                return self._provenance_only(schema)
            attrs.setdefault("numeric", []).extend({"idx": index + i, "name": f"{name}_{i}"} for i in range(width))
            index += width
        return {"ml_attr": {"attrs": attrs, "num_attrs": index}, **self._provenance_only(schema)}

    def _provenance_only(self, schema: T.StructType) -> dict:
        inputs = {c: lineage.of(schema, c) for c in self.getInputCols() if lineage.of(schema, c)}
        return {lineage.KEY: {"stage": self.zoo_name, "inputs": inputs}} if inputs else {}

    def _apply(self, dataset: DataFrame) -> DataFrame:
        self._refuse_mixed_rows(dataset, self.getInputCols())
        out = self._assembled(dataset)
        return out.withMetadata(self.getOutputCol(), self._metadata(dataset.schema))

    def _assembled(self, dataset: DataFrame) -> DataFrame:
        pieces, invalid, whole_null = self._parts(dataset.schema)
        vector = to_vector(dataset.sparkSession, F.concat(*pieces))
        mode = self.getHandleInvalid()
        if mode == "skip":
            bad = F.lit(False)
            for _, test in invalid:
                bad = bad | test
            return dataset.where(~bad).withColumn(self.getOutputCol(), vector)
        checks = invalid if mode == "error" else whole_null
        what = "null or NaN values" if mode == "error" else "a null array/vector (its length is unknown)"
        culprits = F.concat_ws(", ", *[F.when(test, F.lit(name)) for name, test in checks])
        any_bad = F.lit(False)
        for _, test in checks:
            any_bad = any_bad | test
        message = F.concat(
            F.lit(f"{self._describe()}: {what} in column(s) "), culprits,
            F.lit(f" with handleInvalid='{mode}'; use 'skip' to drop such rows" + (" or 'keep' to emit NaN" if mode == "error" else "")),
        )
        return dataset.withColumn(self.getOutputCol(), F.when(any_bad, F.raise_error(message)).otherwise(vector))

    @classmethod
    def zoo_examples(cls, spark):
        df = spark.createDataFrame(
            [(1.0, True, [0.5, 1.5, 2.5]), (-2.0, False, [1.0, 0.0, -1.0]), (3.0, None, [9.0, 8.0, 7.0])], _FUZZ
        )
        return [
            StageExample(cls(inputCols=["x", "arr"], outputCol="features"), df),
            StageExample(cls(inputCols=["x", "flag", "arr"], outputCol="v", handleInvalid="skip"), df),
            StageExample(cls(inputCols=["arr", "flag"], outputCol="v", handleInvalid="keep"), df),
        ]

    @classmethod
    def zoo_fuzz_schema(cls):
        return _FUZZ
