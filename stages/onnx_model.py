"""``onnx_model``: run any ONNX model on DataFrame columns (SynapseML's ONNXModel, on the zoo's plumbing)."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer, is_numeric
from zoo.stages.params import HasErrorCol, HasHandleInvalid, HasModel, param
from zoo.stages.persistence import HasEmbeddedModel

from zoo.errors import SchemaError, StageError
from zoo.lineage import attach, record
from zoo.runtime.sessions import RuntimeOptions
from zoo.stages.workers.tensors import ZIPMAP, Feed, Fetch

_SPARK = {"float32": T.FloatType(), "float64": T.DoubleType(), "int64": T.LongType(), "int32": T.IntegerType(),
          "bool": T.BooleanType(), "str": T.StringType(), ZIPMAP: T.DoubleType()}
_WIDEN = {"float16": "float32", "int8": "int32", "uint8": "int32", "int16": "int32", "uint16": "int32"}
_ORT_NP = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
           "tensor(int16)": "int16", "tensor(bool)": "bool", "tensor(string)": "str"}
EXPECTED = "a numeric, boolean or string column, an array of them (nested arrays allowed) or a vector"
ZIPMAP_FORMATS = ("array", "map")
MASK_INPUT = "attention_mask"  # the mask input found without maskInput (BERT-style exports)


def to_feed_dict(value: Any) -> dict[str, str | list[str]]:
    """TypeConverter for ``feedDict``: model input -> a column, or a list of scalar columns assembled in order."""
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and (isinstance(v, str) or (isinstance(v, (list, tuple)) and v and
                                                       all(isinstance(c, str) for c in v)))
        for k, v in value.items())
    if not ok:
        raise TypeError(f"feedDict maps model input names to a column name or a list of column names, got {value!r}")
    return {k: v if isinstance(v, str) else list(v) for k, v in value.items()}


def _scalar_number(t: T.DataType) -> bool:
    return is_numeric(t) or isinstance(t, T.BooleanType)


def _softmax(scores: Column) -> Column:
    """Softmax of an array column, as array<double> (shifted by the maximum: no overflow)."""
    scores = scores.cast("array<double>")
    shifted = F.transform(scores, lambda x: F.exp(x - F.array_max(scores)))
    total = F.aggregate(shifted, F.lit(0.0), lambda acc, x: acc + x)
    return F.transform(shifted, lambda x: x / total)


def _argmax(scores: Column) -> Column:
    """Index of the largest element of an array column (the first of equal maxima, as numpy's argmax)."""
    # through call_function: PySpark 3.5's array_position takes only a literal as the value to find
    return F.call_function("array_position", scores, F.array_max(scores)) - 1


def _dim_names(shape) -> tuple:
    """The names of a tensor's dimensions (None where a dimension has none, or the shape is unknown)."""
    return tuple(d if isinstance(d, str) else None for d in shape) if shape is not None else (None, None)


def _leaf(t: T.DataType) -> T.DataType:
    """The element type under any nesting of arrays."""
    while isinstance(t, T.ArrayType):
        t = t.elementType
    return t


def _feedable(t: T.DataType) -> bool:
    t = _leaf(t)
    return is_numeric(t) or isinstance(t, (T.BooleanType, T.StringType, VectorUDT))


_ZIPMAP_LABELS: dict[str, dict[str, tuple]] = {}  # model sha256 -> {ZipMap output: class labels}


def _zipmap_labels(spec) -> dict[str, tuple]:
    """Every output of the model made by a ZipMap node (converted scikit-learn, LightGBM and XGBoost
    classifiers: a sequence of {class: probability} maps), with its class labels in the model's
    order. Read from the graph once per model and process: they are a property of its bytes."""
    if spec.sha256 not in _ZIPMAP_LABELS:
        import onnx

        from zoo.runtime.models import obtain

        model = obtain(spec)
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else \
            onnx.load(str(model), load_external_data=False)
        labels = {}
        for node in proto.graph.node:
            if node.op_type == "ZipMap":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                found = attrs.get("classlabels_int64s") or [b.decode() for b in attrs.get("classlabels_strings", [])]
                labels[node.output[0]] = tuple(found)
        _ZIPMAP_LABELS[spec.sha256] = labels
    return _ZIPMAP_LABELS[spec.sha256]


class ONNXModel(ZooTransformer, HasModel, HasEmbeddedModel, HasHandleInvalid, HasErrorCol):
    """Run an ONNX model: ``feedDict`` maps model inputs to columns, ``fetchDict`` output columns to tensors.

    The model is a zoo name or alias, ``sha256:<hex>``, or an ``.onnx`` path (``setModelBytes``
    stores bytes in the zoo cache and uses their sha256); ``cut`` runs it cut like the featurizer.
    A fetched tensor may be any intermediate tensor, not only a graph output.

    Inputs: each row's values are cast to the model's dtype and reshaped to its input shape. A
    feedDict value that is a list of numeric columns is assembled, in that order, into the one
    tensor a converted tabular model takes (``{"X": ["age", "income", ...]}``). String columns feed
    string inputs. Rows of different lengths for an input with one dynamic dimension (token ids)
    are padded with ``padValue`` and a 0/1 mask fed to ``maskInput`` when the model takes one
    (outputs along the padded dimension are cut back to each row's length), else run in groups of
    equal length: a row's result never depends on the rows batched with it.

    Outputs: rank 1 becomes a scalar column; others arrays, flattened or nested by tensor dimension
    (``flattenOutputs``); uint8/int8/float16 are widened to int/float; a string tensor gives strings
    and a label output keeps its type (string or bigint). A ZipMap output (``seq(map)``: a converted
    scikit-learn, LightGBM or XGBoost classifier's probabilities) gives array<double> in the model's
    class order, or a map {class: probability} with ``zipMapFormat="map"``. ``softmaxDict`` and
    ``argMaxDict`` add softmax (array<double>) and argmax (int) columns of flat fetched outputs,
    computed in Spark SQL.
    ``handleInvalid``: a row the model cannot take (a null, a wrong type or width) fails the stage
    naming the row and column (``error``), is dropped (``skip``), or gets null outputs and the reason
    in ``errorCol`` (``keep``); the other rows of its batch are scored either way.
    A text model whose StringNormalizer asks for a locale the machine lacks (skl2onnx's default,
    ``en_US.UTF-8``) is refused on the driver with the fixes; ``stringLocale`` runs a copy that
    uses a locale the machine has (``zoo.hub.locale_copy`` says when that changes results).
    """

    zoo_name = "onnx_model"
    zoo_streaming = True  # checked by the kit's streaming check
    feedDict = param("model input name -> input column, or a list of numeric columns assembled in order", to_feed_dict)
    fetchDict = param("output column -> model output (or any intermediate tensor) name", dict[str, str])
    softmaxDict = param("fetched column -> new column with its softmax", dict[str, str])
    argMaxDict = param("fetched column -> new column with its argmax index", dict[str, str])
    flattenOutputs = param("outputs of rank > 2 as flat arrays (True) or arrays nested by dimension (False)", bool)
    zipMapFormat = param("a ZipMap output (class probabilities) as 'array' (in the model's class order) or 'map' "
                         "(class -> probability)")
    maskInput = param("model input that gets the padding mask (1 real, 0 padding) when rows of different lengths "
                      f"are padded; '' finds an input named {MASK_INPUT} that feedDict leaves out")
    padValue = param("value padding rows of different lengths, for a model that takes a mask", float)
    stringLocale = param("locale for the model's StringNormalizer nodes, e.g. 'C.UTF-8': sparkzoo runs a copy of the "
                         "model with it ('' = the model as it is; a locale this machine lacks is refused with the fixes)")

    @keyword_only
    def __init__(self, *, modelName: str | None = None, cut: Any = None, modelSha256: str | None = None,
                 feedDict: dict | None = None, fetchDict: dict | None = None, softmaxDict: dict | None = None,
                 argMaxDict: dict | None = None, flattenOutputs: bool | None = None, zipMapFormat: str | None = None,
                 maskInput: str | None = None, padValue: float | None = None, stringLocale: str | None = None,
                 batchSize: int | None = None, device: str | None = None,
                 numThreads: int | None = None, graphOptimization: str | None = None,
                 executionProviders: list | None = None, shipModel: bool | None = None,
                 embedModel: bool | None = None, handleInvalid: str | None = None, errorCol: str | None = None):
        super().__init__()
        self._setDefault(cut=0, feedDict={}, fetchDict={}, softmaxDict={}, argMaxDict={}, flattenOutputs=True,
                         zipMapFormat="array", maskInput="", padValue=0.0, stringLocale="")
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    def setModelBytes(self, data: bytes) -> "ONNXModel":
        """Store ``data`` in the zoo cache and run it (executors on other nodes need ``shipModel``)."""
        from zoo.hub.cache import model_cache

        sha, _ = model_cache().import_bytes(bytes(data))
        return self._set(modelName=f"sha256:{sha}")

    # -- the model's signature (driver side) ----------------------------------------------------------
    def _signature(self, spark):
        """(spec, {input: (dtype, shape, dimension names)}, {tensor: (dtype, rank, dimension names)}, extra
        outputs) from a driver session; a shape has -1 for a dynamic dimension, a name is None if it has none."""
        from zoo.stages.workers.tensors import tensor_session

        spec = self._model_spec(spark, preprocess=None, locale=self.getStringLocale() or None)
        fetch = self.getFetchDict()
        base = tensor_session(spec, (), RuntimeOptions(device="cpu", intra_op_threads=1))
        outputs = {o.name for o in base.get_outputs()}
        extra = tuple(sorted({t for t in fetch.values() if t not in outputs}))
        if extra:
            import onnx

            from zoo.runtime.models import obtain

            runnable = obtain(spec)
            graph = (onnx.load_from_string(runnable) if isinstance(runnable, bytes)
                     else onnx.load(str(runnable), load_external_data=False)).graph  # the weights are not needed
            known = {o for n in graph.node for o in n.output}
            for col, tensor in fetch.items():
                if tensor in extra and tensor not in known:
                    raise StageError(f"{self._describe()}: the model has no tensor {tensor!r} (fetchDict[{col!r}]); its "
                                     f"outputs are {', '.join(sorted(outputs))}")
        sess = tensor_session(spec, extra, RuntimeOptions(device="cpu", intra_op_threads=1)) if extra else base
        inputs = {i.name: (_ORT_NP.get(i.type, "float32"), tuple(d if isinstance(d, int) else -1 for d in i.shape[1:]),
                           _dim_names(i.shape)) for i in sess.get_inputs()}
        outs = {o.name: (_ORT_NP.get(o.type, "float32"), len(o.shape) if o.shape is not None else 2, _dim_names(o.shape))
                for o in sess.get_outputs()}
        sequences = {o.name for o in sess.get_outputs() if o.type.startswith("seq(map(")}
        zipmaps = _zipmap_labels(spec) if sequences & set(fetch.values()) else {}
        for name in sequences & set(zipmaps):
            outs[name] = (ZIPMAP, 2, (None, None))
        for col, tensor in fetch.items():
            if tensor in sequences and tensor not in zipmaps:
                raise StageError(f"{self._describe()}: output {tensor!r} (fetchDict[{col!r}]) is a sequence that is not a "
                                 "ZipMap of class probabilities; only those can become columns")
        return spec, inputs, outs, extra

    def _mask_input(self, inputs: dict, feed: dict) -> tuple[str, str] | None:
        """(model input, dtype) that gets the padding mask, or None."""
        name = self.getMaskInput()
        if name and name not in inputs:
            raise StageError(f"{self._describe()}: maskInput names {name!r}; the model's inputs are {', '.join(inputs)}")
        if name and name in feed:
            raise StageError(f"{self._describe()}: maskInput {name!r} is also fed from column {feed[name]!r}; the stage "
                             "makes the mask itself: leave it out of feedDict or set maskInput=''")
        name = name or (MASK_INPUT if MASK_INPUT in inputs and MASK_INPUT not in feed else "")
        if not name:
            return None
        if not any(sum(d < 0 for d in inputs[i][1]) == 1 for i in feed):
            raise StageError(f"{self._describe()}: mask input {name!r} needs a fed input with one dynamic dimension "
                             "(rows of varying length)")
        return name, inputs[name][0]

    def _plan(self, schema: T.StructType, spark):
        """(spec, signature inputs, extra outputs, mask, fetches): what the schema and the executors need."""
        self._check_model_params()
        feed, fetch = self.getFeedDict(), self.getFetchDict()
        if not feed or not fetch:
            raise StageError(f"{self._describe()}: set feedDict (model input -> column) and fetchDict (column -> tensor)")
        for col in feed.values():
            for part in ([col] if isinstance(col, str) else col):
                if isinstance(col, str):
                    self.require_column(schema, part, EXPECTED, accept=_feedable)
                else:
                    self.require_column(schema, part, "a numeric or boolean column (assembled into one model input)",
                                        accept=lambda t: _scalar_number(t) or isinstance(t, T.StringType))
        if self.getZipMapFormat() not in ZIPMAP_FORMATS:
            raise StageError(f"{self._describe()}: zipMapFormat must be one of {', '.join(ZIPMAP_FORMATS)}; got "
                             f"{self.getZipMapFormat()!r}")
        spec, inputs, outs, extra = self._signature(spark)
        for name in feed:
            if name not in inputs:
                raise StageError(f"{self._describe()}: feedDict names model input {name!r}; the model's inputs are "
                                 f"{', '.join(inputs)}")
        self._check_kinds(schema, feed, inputs)
        mask = self._mask_input(inputs, feed)
        missing = [name for name in inputs if name not in feed and (mask is None or name != mask[0])]
        if missing:
            raise StageError(f"{self._describe()}: model inputs {missing} have no column in feedDict")
        padded = {names[1 + shape.index(-1)] for name in feed for _, shape, names in [inputs[name]]
                  if shape.count(-1) == 1} - {None}
        fetches = []
        for col, tensor in fetch.items():
            if tensor not in outs:
                raise StageError(f"{self._describe()}: the model has no tensor {tensor!r} (fetchDict[{col!r}])")
            dtype, rank, names = outs[tensor]
            dtype = _WIDEN.get(dtype, dtype)
            if dtype == ZIPMAP:
                kind = "map" if self.getZipMapFormat() == "map" else "flat"
            else:
                kind = "scalar" if rank == 1 else "nested" if rank > 2 and not self.getFlattenOutputs() else "flat"
            follows = mask is not None and rank >= 2 and len(names) > 1 and names[1] in padded
            fetches.append(Fetch(col, tensor, dtype, kind, rank - 1 if kind == "nested" else 1, follows))
        return spec, inputs, extra, mask, tuple(fetches)

    def _check_kinds(self, schema: T.StructType, feed: dict, inputs: dict) -> None:
        """Text feeds text and numbers feed numbers: a column of the other kind is refused before anything runs
        (strings are never parsed into numbers behind the user's back, nor numbers printed into strings)."""
        for name, col in feed.items():
            wants_text = inputs[name][0] == "str"
            if wants_text and not isinstance(col, str):
                raise SchemaError(f"{self._describe()}: model input {name!r} takes strings; columns {col} would be "
                                  "assembled into numbers: feed it one string or array<string> column")
            for part in [col] if isinstance(col, str) else col:
                column_type = schema[part].dataType
                if isinstance(_leaf(column_type), T.StringType) == wants_text:
                    continue
                target = "STRING" if wants_text else "FLOAT"
                if isinstance(column_type, T.ArrayType):
                    target = f"ARRAY<{target}>"
                # try_cast (Spark >= 3.2): under ANSI mode (Spark 4's default) a plain cast fails the whole job
                raise SchemaError(
                    f"{self._describe()}: column {part!r} ({column_type.simpleString()}) cannot feed model input "
                    f"{name!r}, which takes {'strings' if wants_text else inputs[name][0] + ' numbers'}; cast it first, "
                    f'e.g. F.expr("try_cast(`{part}` AS {target})")' + ("" if wants_text else
                                                                        " (a value that does not parse becomes null, "
                                                                        "which handleInvalid then decides on)"))

    def _column_type(self, fetch: Fetch, spec) -> T.DataType:
        if fetch.kind == "map":
            labels = _zipmap_labels(spec)[fetch.tensor]
            key = T.StringType() if labels and isinstance(labels[0], str) else T.LongType()
            return T.MapType(key, T.DoubleType(), False)
        kind = _SPARK[fetch.dtype]
        for _ in range(0 if fetch.kind == "scalar" else fetch.rank):
            kind = T.ArrayType(kind, False)
        return kind

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        from pyspark.sql import SparkSession

        keep = self._check_handle_invalid() == "keep"
        spec, _, _, _, fetches = self._plan(schema, SparkSession.getActiveSession())
        fields = list(schema.fields)
        for fetch in fetches:
            self.require_new_column(T.StructType(fields), fetch.column)
            fields.append(T.StructField(fetch.column, self._column_type(fetch, spec), True))
        kinds = {f.column: f.kind for f in fetches}
        for kind, mapping in (("softmaxDict", self.getSoftmaxDict()), ("argMaxDict", self.getArgMaxDict())):
            for src, dest in mapping.items():
                if kinds.get(src) != "flat":
                    raise StageError(f"{self._describe()}: {kind} needs a fetched flat array column; {src!r} is not one")
                self.require_new_column(T.StructType(fields), dest)
                kind_type = T.ArrayType(T.DoubleType(), False) if kind == "softmaxDict" else T.IntegerType()
                fields.append(T.StructField(dest, kind_type, True))
        if keep:
            self.require_new_column(T.StructType(fields), self.getErrorCol())
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    def _executor_job(self, dataset: DataFrame):
        """(dataset with vector feeds as arrays and scalar columns assembled, the temporary columns, what
        the executors get)."""
        from zoo.stages.workers.tensors import TensorJob

        spec, inputs, extra, mask, fetches = self._plan(dataset.schema, dataset.sparkSession)
        temp, feeds = [], []
        for i, (name, col) in enumerate(sorted(self.getFeedDict().items())):
            dtype, shape, _ = inputs[name]
            tmp = f"__zoo_feed_{i}"
            if isinstance(col, list):  # scalar columns, in order, as the one tensor of a converted tabular model
                item = _SPARK.get(_WIDEN.get(dtype, dtype), T.DoubleType())
                dataset = dataset.withColumn(tmp, F.array(*[F.col(f"`{c}`").cast(item) for c in col]))
                feeds.append(Feed(name, tmp, dtype, shape, shown=", ".join(col), parts=tuple(col)))
            elif isinstance(dataset.schema[col].dataType, VectorUDT):  # dense values, computed in the JVM
                dataset = dataset.withColumn(tmp, vector_to_array(F.col(f"`{col}`")))
                feeds.append(Feed(name, tmp, dtype, shape, shown=col))
            else:
                feeds.append(Feed(name, col, dtype, shape))
                continue
            temp.append(tmp)
        zipmaps = tuple((f.tensor, _zipmap_labels(spec)[f.tensor]) for f in fetches if f.dtype == ZIPMAP)
        job = TensorJob(spec, tuple(feeds), fetches, extra, self.getBatchSize(), self._runtime_options(), self._describe(),
                        zipmaps, self.getHandleInvalid(), self.getErrorCol(), mask, self.getPadValue())
        return dataset, temp, job

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.tensors import run_tensors

        schema = self.transformSchema(dataset.schema)
        dataset, temp, job = self._executor_job(dataset)
        made = set(self.getFetchDict()) | ({self.getErrorCol()} if job.handle_invalid == "keep" else set())
        mapped = T.StructType([*dataset.schema.fields, *[f for f in schema.fields if f.name in made]])
        out = dataset.mapInArrow(lambda batches: run_tensors(batches, job), mapped)
        for src, dest in self.getSoftmaxDict().items():
            out = out.withColumn(dest, _softmax(F.col(f"`{src}`")))
        for src, dest in self.getArgMaxDict().items():
            out = out.withColumn(dest, _argmax(F.col(f"`{src}`")).cast("int"))
        out = out.drop(*temp).select(*[f"`{f.name}`" for f in schema.fields])
        for fetch in job.fetches:  # what made each output column (zoo.lineage)
            out = attach(out, fetch.column, record(self.zoo_name, job.spec, output=fetch.tensor, width=None,
                                                   device=self.getDevice()))
        return out

    @classmethod
    def zoo_examples(cls, spark):
        import numpy as np

        from zoo.testing import tiny

        rng = np.random.default_rng(0)
        rows = [(i, rng.normal(size=3 * 32 * 32).astype(float).tolist()) for i in range(5)]
        df = spark.createDataFrame(rows, "id int, pixels array<float>")
        model = tiny.tiny_model_path()
        return [
            StageExample(cls(modelName=model, feedDict={"input": "pixels"}, fetchDict={"probs": "probabilities"},
                             argMaxDict={"probs": "label"}), df),
            StageExample(cls(modelName=model, feedDict={"input": "pixels"}, fetchDict={"pooled": "flat", "logits": "logits"},
                             softmaxDict={"logits": "softmax"}, batchSize=2), df),
            StageExample(cls(modelName=model, cut=1, feedDict={"input": "pixels"}, fetchDict={"logits": "logits"}), df),
            # a null and a short row among good ones: null outputs and the reason for those two only
            StageExample(cls(modelName=model, feedDict={"input": "pixels"}, fetchDict={"probs": "probabilities"},
                             handleInvalid="keep", batchSize=3),
                         df.union(spark.createDataFrame([(5, None), (6, [1.0, 2.0])], df.schema))),
            # token ids of different lengths: padded, the mask made by the stage, outputs cut back per row
            StageExample(cls(modelName=tiny.tiny_text_encoder_path(),
                             feedDict={"input_ids": "ids", "token_type_ids": "types"},
                             fetchDict={"hidden": "last_hidden_state"}, flattenOutputs=False, batchSize=2),
                         spark.createDataFrame([(i, ids, [0] * len(ids)) for i, ids in
                                                enumerate([[2, 6, 7, 3], [2, 3], [2, 5, 10, 11, 12, 3], [2, 7, 3]])],
                                               "id int, ids array<bigint>, types array<bigint>")),
        ]
