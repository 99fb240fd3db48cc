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
registry yet; the stage is tested with a tiny real encoder and tokenizer built in
:mod:`zoo.testing.tiny`. What runs on the executors is :mod:`zoo.stages.workers.text`.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import HasModel, param
from zoo.stages.persistence import HasEmbeddedModel
from zoo.stages.workers.text import POOLINGS, TOKENIZER_INPUTS, load_tokenizer

from zoo.errors import StageError
from zoo.lineage import attach, record
from zoo.runtime.jvm_functions import to_vector
from zoo.runtime.sessions import RuntimeOptions


class TextEmbedder(ZooTransformer, HasModel, HasEmbeddedModel, HasInputCol, HasOutputCol):
    """Embed the texts of ``inputCol`` with an ONNX text encoder (``modelName``) and its tokenizer
    (``tokenizer``: a ``tokenizer.json`` path) into the vector column ``outputCol``. With
    ``embedModel`` a saved stage holds both the model and the tokenizer."""

    zoo_name = "text_embedder"
    zoo_streaming = True  # checked by the kit's streaming check
    tokenizer = param("path of the model's Hugging Face tokenizer.json (tokenizers package); '' = the tokenizer file "
                      "the registry pins beside the model")
    maxLength = param("tokens per text; longer texts are truncated", int)
    pooling = param("mean (over real tokens), cls (first token) or none (the model pools)")
    normalize = param("scale each embedding to unit length (for cosine similarity)", bool)
    outputTensor = param("model output to use ('' = the first)")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 tokenizer: str | None = None, maxLength: int | None = None, pooling: str | None = None,
                 normalize: bool | None = None, outputTensor: str | None = None, modelSha256: str | None = None,
                 batchSize: int | None = None, device: str | None = None, numThreads: int | None = None,
                 graphOptimization: str | None = None, executionProviders: list | None = None,
                 shipModel: bool | None = None, embedModel: bool | None = None):
        super().__init__()
        self._set_model_defaults()
        self._setDefault(inputCol="text", outputCol="embedding", tokenizer="", maxLength=128, pooling="mean",
                         normalize=False, outputTensor="")
        self._set(**self._input_kwargs)

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        self._check_model_params()
        if self.getPooling() not in POOLINGS:
            raise StageError(f"{self._describe()}: pooling must be one of {', '.join(POOLINGS)}; got {self.getPooling()!r}")
        if self.getMaxLength() < 1:
            raise StageError(f"{self._describe()}: maxLength must be >= 1; got {self.getMaxLength()}")
        self.require_column(schema, self.getInputCol(), "a string column", accept=lambda t: isinstance(t, T.StringType))
        self.require_new_column(schema, self.getOutputCol())
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])

    def _tokenizer_json(self) -> str:
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        location = self.getTokenizer()
        if not location:  # the registry's: a file pinned beside the model, fetched into the cache
            from zoo.hub.sidecars import path_of

            try:
                location = str(path_of(self.getModelName(), "tokenizer"))
            except Exception as exc:
                raise StageError(f"{self._describe()}: tokenizer is not set and {exc}; give the path of the model's "
                                 "tokenizer.json") from None
        path = url2pathname(urlparse(location).path) if location.startswith("file:") else location
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise StageError(f"{self._describe()}: cannot read tokenizer {location!r}: {exc.strerror or exc}") from None
        try:
            load_tokenizer(text, self.getMaxLength())
        except ImportError:
            raise StageError(f"{self._describe()}: text_embedder needs the tokenizers package: "
                             "pip install 'sparkzoo[text]'") from None
        except Exception as exc:
            raise StageError(f"{self._describe()}: {location!r} is not a tokenizers tokenizer.json: {exc}") from None
        return text

    def _embedded_files(self) -> dict[str, bytes]:
        return {"tokenizer": self._tokenizer_json().encode("utf-8")}

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.tensors import tensor_session
        from zoo.stages.workers.text import TextJob, embed_texts

        spec = self._model_spec(dataset.sparkSession, preprocess=None)
        probe = tensor_session(spec, (), RuntimeOptions(device="cpu", intra_op_threads=1))
        inputs = [i.name for i in probe.get_inputs()]
        unknown = [n for n in inputs if n not in TOKENIZER_INPUTS]
        if unknown:
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} has inputs {unknown} that a tokenizer "
                             f"does not produce (it gives {', '.join(TOKENIZER_INPUTS)})")
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
        out = out.withColumn(self.getOutputCol(), vector).drop("__zoo_embedding")
        import hashlib

        made = record(self.zoo_name, spec, output=output, width=None, device=self.getDevice(),
                      pooling=self.getPooling(), max_length=self.getMaxLength(), normalize=self.getNormalize(),
                      tokenizer_sha256=hashlib.sha256(job.tokenizer_json.encode("utf-8")).hexdigest())
        return attach(out, self.getOutputCol(), made)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        df = spark.createDataFrame([(1, "A snow leopard on the ridge"), (2, "the camera saw nothing"), (3, None),
                                    (4, "Leopard! Leopard? 雪豹 unknown-words")], "id int, text string")
        model, tokenizer = tiny.tiny_text_encoder_path(), tiny.tiny_tokenizer_path()
        return [
            StageExample(cls(modelName=model, tokenizer=tokenizer), df),
            StageExample(cls(modelName=model, tokenizer=tokenizer, pooling="cls", normalize=True, maxLength=3,
                             outputCol="v", batchSize=2), df),
        ]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("text", T.StringType())])
