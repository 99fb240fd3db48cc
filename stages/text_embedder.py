"""``text_embedder``: deep text features from an ONNX text encoder and its Hugging Face tokenizer.

The seam for transformer text encoders (BERT-style exports with ``input_ids`` / ``attention_mask``
/ ``token_type_ids`` inputs and a ``[batch, tokens, hidden]`` output, or sentence encoders that
already pool to ``[batch, hidden]``). The tokenizer is a ``tokenizer.json`` of the ``tokenizers``
package (``pip install 'sparkzoo[text]'``), read on the driver and sent to executors with the job,
so only the model goes through the zoo (by name, sha256 or file, like every model stage).

Executors tokenise a batch at a time (Rust, truncated to ``maxLength``, padded to the longest text
of the batch), run the model through the worker's cached ONNX Runtime session, and pool the token
vectors: ``mean`` over real tokens (attention mask), ``cls`` (the first token) or ``none`` (the
model pools itself). A null text is embedded as the empty text. No text encoder ships in the
registry yet; the stage is tested with a tiny real encoder and tokenizer built in ``zoo._tiny``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from zoo._jvm_functions import to_vector
from zoo.errors import StageError
from zoo.stages._base import StageExample, ZooTransformer
from zoo.stages._model_params import HasModel

POOLINGS = ("mean", "cls", "none")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TextJob:
    """What an executor needs to embed one text column (picklable)."""

    spec: object
    tokenizer_json: str
    max_length: int
    pooling: str
    normalize: bool
    output: str
    input_col: str
    batch_size: int
    runtime: object
    stage: str


@lru_cache(maxsize=4)
def _tokenizer(tokenizer_json: str, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.enable_truncation(max_length)
    pad = next((t for t in ("[PAD]", "<pad>", "<|padding|>") if tok.token_to_id(t) is not None), None)
    tok.enable_padding(pad_id=tok.token_to_id(pad) if pad else 0, pad_token=pad or "[PAD]")
    return tok


def embed_texts(batches: Iterator, job: TextJob) -> Iterator:
    """mapInArrow body of ``text_embedder``: Arrow batches in, the same with an array<float> column added."""
    import pyarrow as pa

    from zoo.stages._inference import _arrow_values, _session

    tok = _tokenizer(job.tokenizer_json, job.max_length)
    session = None
    for batch in batches:
        texts = [t if t is not None else "" for t in batch.column(batch.schema.get_field_index(job.input_col)).to_pylist()]
        chunks = []
        for start in range(0, len(texts), job.batch_size):
            encoded = tok.encode_batch(texts[start:start + job.batch_size])
            arrays = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                      "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                      "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64)}
            session = session or _session(job.spec, job.runtime, on_executor=True)
            feed = {i.name: arrays[i.name] for i in session.get_inputs()}
            out = np.asarray(session.run([job.output], feed)[0], dtype=np.float32)
            chunks.append(_pool(out, arrays["attention_mask"], job))
        matrix = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)  # width is moot for no rows
        names = [*batch.schema.names, "__zoo_embedding"]
        yield pa.RecordBatch.from_arrays([*batch.columns, _arrow_values(matrix)], names=names)


def _pool(out: np.ndarray, mask: np.ndarray, job: TextJob) -> np.ndarray:
    if job.pooling == "none" or out.ndim == 2:
        if out.ndim != 2:
            raise StageError(f"{job.stage}: output {job.output!r} has shape {list(out.shape)}; pooling='none' needs "
                             "[batch, hidden]: use pooling='mean' or 'cls'")
        pooled = out
    elif job.pooling == "cls":
        pooled = out[:, 0, :]
    else:
        weights = mask[:, :, None].astype(np.float32)
        pooled = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    if job.normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32, copy=False)


class TextEmbedder(ZooTransformer, HasModel, HasInputCol, HasOutputCol):
    """Embed the texts of ``inputCol`` with an ONNX text encoder (``modelName``) and its tokenizer
    (``tokenizer``: a ``tokenizer.json`` path) into the vector column ``outputCol``."""

    zoo_name = "text_embedder"
    zoo_streaming = True  # checked by the kit's streaming check
    tokenizer = Param(Params._dummy(), "tokenizer", "path of the model's Hugging Face tokenizer.json (tokenizers package)",
                      TypeConverters.toString)
    maxLength = Param(Params._dummy(), "maxLength", "tokens per text; longer texts are truncated", TypeConverters.toInt)
    pooling = Param(Params._dummy(), "pooling", "mean (over real tokens), cls (first token) or none (the model pools)",
                    TypeConverters.toString)
    normalize = Param(Params._dummy(), "normalize", "scale each embedding to unit length (for cosine similarity)",
                      TypeConverters.toBoolean)
    outputTensor = Param(Params._dummy(), "outputTensor", "model output to use ('' = the first)", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 tokenizer: str | None = None, maxLength: int | None = None, pooling: str | None = None,
                 normalize: bool | None = None, outputTensor: str | None = None, modelSha256: str | None = None,
                 batchSize: int | None = None, device: str | None = None, numThreads: int | None = None,
                 shipModel: bool | None = None):
        super().__init__()
        self._set_model_defaults()
        self._setDefault(inputCol="text", outputCol="embedding", tokenizer="", maxLength=128, pooling="mean",
                         normalize=False, outputTensor="")
        self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> "TextEmbedder":
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> "TextEmbedder":
        return self._set(outputCol=value)

    def setTokenizer(self, value: str) -> "TextEmbedder":
        return self._set(tokenizer=value)

    def getTokenizer(self) -> str:
        return self.getOrDefault(self.tokenizer)

    def setMaxLength(self, value: int) -> "TextEmbedder":
        return self._set(maxLength=value)

    def getMaxLength(self) -> int:
        return self.getOrDefault(self.maxLength)

    def setPooling(self, value: str) -> "TextEmbedder":
        return self._set(pooling=value)

    def getPooling(self) -> str:
        return self.getOrDefault(self.pooling)

    def setNormalize(self, value: bool) -> "TextEmbedder":
        return self._set(normalize=value)

    def getNormalize(self) -> bool:
        return self.getOrDefault(self.normalize)

    def setOutputTensor(self, value: str) -> "TextEmbedder":
        return self._set(outputTensor=value)

    def getOutputTensor(self) -> str:
        return self.getOrDefault(self.outputTensor)

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        self._check_model_params()
        if not self.getTokenizer():
            raise StageError(f"{self._describe()}: tokenizer is not set; give the path of the model's tokenizer.json")
        if self.getPooling() not in POOLINGS:
            raise StageError(f"{self._describe()}: pooling must be one of {', '.join(POOLINGS)}; got {self.getPooling()!r}")
        if self.getMaxLength() < 1:
            raise StageError(f"{self._describe()}: maxLength must be >= 1; got {self.getMaxLength()}")
        self._require_column(schema, self.getInputCol(), "a string column", accept=lambda t: isinstance(t, T.StringType))
        self._require_new_column(schema, self.getOutputCol())
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])

    def _tokenizer_json(self) -> str:
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        location = self.getTokenizer()
        path = url2pathname(urlparse(location).path) if location.startswith("file:") else location
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise StageError(f"{self._describe()}: cannot read tokenizer {location!r}: {exc.strerror or exc}") from None
        try:
            _tokenizer(text, self.getMaxLength())
        except ImportError:
            raise StageError(f"{self._describe()}: text_embedder needs the tokenizers package: "
                             "pip install 'sparkzoo[text]'") from None
        except Exception as exc:
            raise StageError(f"{self._describe()}: {location!r} is not a tokenizers tokenizer.json: {exc}") from None
        return text

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages._inference import tensor_session
        from zoo._runtime import RuntimeOptions

        spec = self._model_spec(dataset.sparkSession, preprocess=None)
        probe = tensor_session(spec, (), RuntimeOptions(device="cpu", intra_op_threads=1))
        inputs = [i.name for i in probe.get_inputs()]
        unknown = [n for n in inputs if n not in _INPUTS]
        if unknown:
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} has inputs {unknown} that a tokenizer "
                             f"does not produce (it gives {', '.join(_INPUTS)})")
        outputs = [o.name for o in probe.get_outputs()]
        output = self.getOutputTensor() or outputs[0]
        if output not in outputs:
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} has no output {output!r}; its outputs "
                             f"are {', '.join(outputs)}")
        rank = {o.name: len(o.shape) if o.shape is not None else 0 for o in probe.get_outputs()}[output]
        if self.getPooling() == "none" and rank != 2:
            raise StageError(f"{self._describe()}: output {output!r} has {rank} dimensions; pooling='none' needs "
                             "[batch, hidden]: use pooling='mean' or 'cls'")
        job = TextJob(spec, self._tokenizer_json(), self.getMaxLength(), self.getPooling(), self.getNormalize(), output,
                      self.getInputCol(), self.getBatchSize() or 32, self._runtime_options(), self._describe())
        mapped = T.StructType([*dataset.schema.fields, T.StructField("__zoo_embedding", T.ArrayType(T.FloatType()), True)])
        out = dataset.mapInArrow(lambda batches: embed_texts(batches, job), mapped)
        vector = to_vector(dataset.sparkSession, F.col("__zoo_embedding"))
        return out.withColumn(self.getOutputCol(), vector).drop("__zoo_embedding")

    @classmethod
    def zoo_examples(cls, spark):
        from zoo import _tiny

        df = spark.createDataFrame([(1, "A snow leopard on the ridge"), (2, "the camera saw nothing"), (3, None),
                                    (4, "Leopard! Leopard? 雪豹 unknown-words")], "id int, text string")
        model, tokenizer = _tiny.tiny_text_encoder_path(), _tiny.tiny_tokenizer_path()
        return [
            StageExample(cls(modelName=model, tokenizer=tokenizer), df),
            StageExample(cls(modelName=model, tokenizer=tokenizer, pooling="cls", normalize=True, maxLength=3,
                             outputCol="v", batchSize=2), df),
        ]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("text", T.StringType())])
