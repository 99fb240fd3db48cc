"""``onnx_model``: run any ONNX model on DataFrame columns (SynapseML's ONNXModel, on the zoo's plumbing)."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer, is_numeric
from zoo.stages.params import HasErrorCol, HasHandleInvalid, HasModel, param
from zoo.stages.persistence import HasEmbeddedModel

from zoo.errors import StageError
from zoo.runtime.sessions import RuntimeOptions
from zoo.stages.workers.tensors import ZIPMAP

_SPARK = {"float32": T.FloatType(), "float64": T.DoubleType(), "int64": T.LongType(), "int32": T.IntegerType(),
          "bool": T.BooleanType(), "str": T.StringType(), ZIPMAP: T.DoubleType()}
_WIDEN = {"float16": "float32", "int8": "int32", "uint8": "int32", "int16": "int32", "uint16": "int32"}
_ORT_NP = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
           "tensor(int16)": "int16", "tensor(bool)": "bool", "tensor(string)": "str"}
EXPECTED = "a numeric, boolean or string column, an array of them (nested arrays allowed) or a vector"


def _feedable(t: T.DataType) -> bool:
    while isinstance(t, T.ArrayType):
        t = t.elementType
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
    A fetched tensor may be any intermediate tensor, not only a graph output. Each row's input
    values are cast to the model's dtype and reshaped to its input shape (one dynamic dimension
    besides the batch may be inferred). Outputs of rank 1 become scalar columns, others flattened
    arrays (uint8/int8/float16 widened to int/float); a string tensor gives strings, and a ZipMap
    output (``seq(map)``: a converted scikit-learn, LightGBM or XGBoost classifier's probabilities)
    gives array<double> in the model's class order. String columns feed string inputs. ``softmaxDict``
    and ``argMaxDict`` add softmax (array<double>) and argmax (int) columns of fetched outputs,
    computed in Spark SQL.
    ``handleInvalid``: a row the model cannot take (a null, a wrong type or width) fails the stage
    naming the row and column (``error``), is dropped (``skip``), or gets null outputs and the reason
    in ``errorCol`` (``keep``); the other rows of its batch are scored either way.
    """

    zoo_name = "onnx_model"
    zoo_streaming = True  # checked by the kit's streaming check
    feedDict = param("model input name -> input column", dict[str, str])
    fetchDict = param("output column -> model output (or any intermediate tensor) name", dict[str, str])
    softmaxDict = param("fetched column -> new column with its softmax", dict[str, str])
    argMaxDict = param("fetched column -> new column with its argmax index", dict[str, str])

    @keyword_only
    def __init__(self, *, modelName: str | None = None, cut: Any = None, modelSha256: str | None = None,
                 feedDict: dict | None = None, fetchDict: dict | None = None, softmaxDict: dict | None = None,
                 argMaxDict: dict | None = None, batchSize: int | None = None, device: str | None = None,
                 numThreads: int | None = None, graphOptimization: str | None = None,
                 executionProviders: list | None = None, shipModel: bool | None = None,
                 embedModel: bool | None = None, handleInvalid: str | None = None, errorCol: str | None = None):
        super().__init__()
        self._setDefault(cut=0, feedDict={}, fetchDict={}, softmaxDict={}, argMaxDict={})
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    def setModelBytes(self, data: bytes) -> "ONNXModel":
        """Store ``data`` in the zoo cache and run it (executors on other nodes need ``shipModel``)."""
        from zoo.hub.cache import model_cache

        sha, _ = model_cache().import_bytes(bytes(data))
        return self._set(modelName=f"sha256:{sha}")

    # -- the model's signature (driver side) ----------------------------------------------------------
    def _signature(self, spark):
        """(spec, {input: (dtype, shape)}, {tensor: (dtype, rank)}, extra outputs) from a driver session."""
        from zoo.stages.workers.tensors import tensor_session

        spec = self._model_spec(spark, preprocess=None)
        fetch = self.getFetchDict()
        base = tensor_session(spec, (), RuntimeOptions(device="cpu", intra_op_threads=1))
        outputs = {o.name for o in base.get_outputs()}
        extra = tuple(sorted({t for t in fetch.values() if t not in outputs}))
        if extra:
            import onnx

            from zoo.runtime.models import obtain

            runnable = obtain(spec)
            graph = (onnx.load_from_string(runnable) if isinstance(runnable, bytes) else onnx.load(str(runnable))).graph
            known = {o for n in graph.node for o in n.output}
            for col, tensor in fetch.items():
                if tensor in extra and tensor not in known:
                    raise StageError(f"{self._describe()}: the model has no tensor {tensor!r} (fetchDict[{col!r}]); its "
                                     f"outputs are {', '.join(sorted(outputs))}")
        sess = tensor_session(spec, extra, RuntimeOptions(device="cpu", intra_op_threads=1)) if extra else base
        inputs = {i.name: (_ORT_NP.get(i.type, "float32"), tuple(d if isinstance(d, int) else -1 for d in i.shape[1:]))
                  for i in sess.get_inputs()}
        outs = {o.name: (_ORT_NP.get(o.type, "float32"), len(o.shape) if o.shape is not None else 2)
                for o in sess.get_outputs()}
        sequences = {o.name for o in sess.get_outputs() if o.type.startswith("seq(map(")}
        zipmaps = _zipmap_labels(spec) if sequences & set(fetch.values()) else {}
        for name in sequences & set(zipmaps):
            outs[name] = (ZIPMAP, 2)
        for col, tensor in fetch.items():
            if tensor in sequences and tensor not in zipmaps:
                raise StageError(f"{self._describe()}: output {tensor!r} (fetchDict[{col!r}]) is a sequence that is not a "
                                 "ZipMap of class probabilities; only those can become columns")
        return spec, inputs, outs, extra

    def transformSchema(self, schema: T.StructType) -> T.StructType:
        from pyspark.sql import SparkSession

        self._check_model_params()
        keep = self._check_handle_invalid() == "keep"
        feed, fetch = self.getFeedDict(), self.getFetchDict()
        if not feed or not fetch:
            raise StageError(f"{self._describe()}: set feedDict (model input -> column) and fetchDict (column -> tensor)")
        for col in feed.values():
            self.require_column(schema, col, EXPECTED, accept=_feedable)
        spark = SparkSession.getActiveSession()
        _, inputs, outs, _ = self._signature(spark)
        for name in feed:
            if name not in inputs:
                raise StageError(f"{self._describe()}: feedDict names model input {name!r}; the model's inputs are "
                                 f"{', '.join(inputs)}")
        missing = [name for name in inputs if name not in feed]
        if missing:
            raise StageError(f"{self._describe()}: model inputs {missing} have no column in feedDict")
        fields = list(schema.fields)
        for col, tensor in fetch.items():
            if tensor not in outs:
                raise StageError(f"{self._describe()}: the model has no tensor {tensor!r} (fetchDict[{col!r}])")
            self.require_new_column(T.StructType(fields), col)
            dtype, rank = outs[tensor]
            item = _SPARK[_WIDEN.get(dtype, dtype)]
            fields.append(T.StructField(col, T.ArrayType(item, False) if rank != 1 else item, True))
        for kind, mapping in (("softmaxDict", self.getSoftmaxDict()), ("argMaxDict", self.getArgMaxDict())):
            for src, dest in mapping.items():
                if src not in fetch or outs[fetch[src]][1] == 1:
                    raise StageError(f"{self._describe()}: {kind} needs a fetched array column; {src!r} is not one")
                self.require_new_column(T.StructType(fields), dest)
                kind_type = T.ArrayType(T.DoubleType(), False) if kind == "softmaxDict" else T.IntegerType()
                fields.append(T.StructField(dest, kind_type, True))
        if keep:
            self.require_new_column(T.StructType(fields), self.getErrorCol())
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    def _executor_job(self, dataset: DataFrame):
        """(dataset with vector feeds as arrays, the temporary columns, what the executors get)."""
        from zoo.stages.workers.tensors import TensorJob

        spec, inputs, outs, extra = self._signature(dataset.sparkSession)
        temp, feeds = [], []
        for i, (name, col) in enumerate(sorted(self.getFeedDict().items())):
            if isinstance(dataset.schema[col].dataType, VectorUDT):  # dense values, computed in the JVM
                tmp = f"__zoo_feed_{i}"
                dataset = dataset.withColumn(tmp, vector_to_array(F.col(f"`{col}`")))
                temp.append(tmp)
                col = tmp
            feeds.append((name, col, *inputs[name]))
        fetches = tuple((col, t, _WIDEN.get(outs[t][0], outs[t][0]), outs[t][1] != 1) for col, t in self.getFetchDict().items())
        zipmaps = tuple((t, _zipmap_labels(spec)[t]) for _, t, dtype, _ in fetches if dtype == ZIPMAP)
        job = TensorJob(spec, tuple(feeds), fetches, extra, self.getBatchSize(), self._runtime_options(), self._describe(),
                        zipmaps, self.getHandleInvalid(), self.getErrorCol())
        return dataset, temp, job

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.tensors import run_tensors

        schema = self.transformSchema(dataset.schema)
        dataset, temp, job = self._executor_job(dataset)
        made = set(self.getFetchDict()) | ({self.getErrorCol()} if job.handle_invalid == "keep" else set())
        mapped = T.StructType([*dataset.schema.fields, *[f for f in schema.fields if f.name in made]])
        out = dataset.mapInArrow(lambda batches: run_tensors(batches, job), mapped)
        for src, dest in self.getSoftmaxDict().items():
            arr = F.col(f"`{src}`").cast("array<double>")
            shifted = F.transform(arr, lambda x: F.exp(x - F.array_max(arr)))
            total = F.aggregate(shifted, F.lit(0.0), lambda acc, x: acc + x)
            out = out.withColumn(dest, F.transform(shifted, lambda x: x / total))
        for src, dest in self.getArgMaxDict().items():
            arr = F.col(f"`{src}`")
            out = out.withColumn(dest, (F.array_position(arr, F.array_max(arr)) - 1).cast("int"))
        return out.drop(*temp).select(*[f"`{f.name}`" for f in schema.fields])

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
        ]
