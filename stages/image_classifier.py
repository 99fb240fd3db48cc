"""``image_classifier``: what is in each image, as SparkML classifiers say it, with class names.

sparkdl's DeepImagePredictor decoded top-K predictions; SparkML's classification models add
``prediction`` (a double index) and ``probability`` (a vector). This stage does both for a zoo
classifier: it runs the whole model through :class:`~zoo.stages.image_featurizer.ImageFeaturizer`
(same decoding, preprocessing, batching, ``handleInvalid``) and turns its output into

- ``prediction``: the index of the top class, as a double (what SparkML evaluators read);
- ``probability``: an ML vector; softmax is applied when the model outputs logits (the registry's
  ``output.activation``; logits unless it says ``softmax``);
- ``label``: the top class's name, from the model's label set (:mod:`zoo.hub.labels`);
- ``topK``: ``array<struct<index: int, label: string, score: double>>``, the ``k`` best classes.

Everything after the model runs in Spark SQL in the JVM: no second Python pass over the rows.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCol, HasPredictionCol, HasProbabilityCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.image_featurizer import ImageFeaturizer
from zoo.stages.params import HasErrorCol, HasHandleInvalid, HasImageInput, HasModel, param
from zoo.stages.persistence import HasEmbeddedModel
from zoo.stages.workers.image_input import EXPECTED, image_column, input_kind

from zoo.errors import StageError
from zoo.hub.labels import LabelSet, resolve
from zoo.lineage import attach
from zoo.runtime.jvm_functions import to_vector

ACTIVATIONS = ("logits", "softmax")
TOPK_TYPE = T.ArrayType(T.StructType([T.StructField("index", T.IntegerType(), False),
                                      T.StructField("label", T.StringType(), True),
                                      T.StructField("score", T.DoubleType(), False)]), False)
_SCORES = "__zoo_scores"


class ImageClassifier(ZooTransformer, HasModel, HasImageInput, HasEmbeddedModel, HasInputCol, HasPredictionCol,
                      HasProbabilityCol, HasHandleInvalid, HasErrorCol):
    """Classify images with a zoo classifier: ``prediction``, ``probability``, ``label`` (class name)
    and ``topK`` columns. ``labels``: '' for the registry's label set of the model, a shipped set
    (``imagenet``) or a label file (one name per line, a JSON list or an id2label object).
    ``activation``: '' as the registry says (logits when it says nothing), ``logits`` or ``softmax``.
    Images the model cannot take follow ``handleInvalid`` as in image_featurizer (``keep``: null
    outputs and the reason in ``errorCol``)."""

    zoo_name = "image_classifier"
    zoo_streaming = True  # checked by the kit's streaming check

    labels = param("class names: '' for the registry's label set of the model, a shipped set name (imagenet) or the "
                   "path of a label file")
    activation = param("what the model outputs: '' as the registry says (logits if it does not say), logits (softmax "
                       "is applied) or softmax (used as is)")
    k = param("how many classes topK holds, best first", int)
    labelNameCol = param("column for the top class's name")
    topKCol = param("column for the k best classes: array<struct<index, label, score>>")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, modelName: str | None = None, modelSha256: str | None = None,
                 labels: str | None = None, activation: str | None = None, k: int | None = None,
                 predictionCol: str | None = None, probabilityCol: str | None = None, labelNameCol: str | None = None,
                 topKCol: str | None = None, preprocess: str | None = None, handleInvalid: str | None = None,
                 errorCol: str | None = None, batchSize: int | None = None, device: str | None = None,
                 numThreads: int | None = None, graphOptimization: str | None = None,
                 executionProviders: list | None = None, maxPixels: int | None = None, shipModel: bool | None = None,
                 embedModel: bool | None = None, fastDecode: bool | None = None, decode: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", labels="", activation="", k=5, predictionCol="prediction",
                         probabilityCol="probability", labelNameCol="label", topKCol="topK")
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    # -- what the model's outputs mean (driver side) -------------------------------------------------
    def _label_set(self) -> LabelSet:
        try:
            return resolve(self.getLabels(), self.getModelName())
        except Exception as exc:
            raise StageError(f"{self._describe()}: {exc}") from None

    def _activation(self) -> str:
        chosen = self.getActivation()
        if chosen:
            if chosen not in ACTIVATIONS:
                raise StageError(f"{self._describe()}: activation must be '', logits or softmax; got {chosen!r}")
            return chosen
        from zoo.hub.api import info
        from zoo.hub.refs import parse

        if parse(self.getModelName()).kind == "path":
            return "logits"
        try:
            output = info(self.getModelName()).get("output") or {}
        except Exception:  # a sha256 no registry names: nothing says otherwise
            return "logits"
        return output.get("activation", "logits")

    def _refuse_detector(self) -> None:
        """A detector's outputs are boxes, not class scores: say which stage runs it, before Spark does."""
        from zoo.hub import registry

        entry = registry.load().get(self.getModelName())
        if entry is not None and (entry.detection is not None or entry.task == "object-detection"):
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} is an object detector, not a "
                             "classifier: use object_detector (`zoo detect`, zoo.pipeline(..., detect=True))")

    def _classes(self) -> int:
        """How many scores the model outputs per image."""
        from zoo.hub.api import cuts

        full = [c for c in cuts(self.getModelName()) if c.index == 0]
        return full[0].feature_length if full else -1

    def _embedded_files(self) -> dict[str, bytes]:
        return {"labels": json.dumps(list(self._label_set().labels)).encode("utf-8")}

    def _embedded_params(self) -> dict[str, Any]:
        return {"activation": self._activation()}

    # -- schema --------------------------------------------------------------------------------------
    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        self._check_model_params()
        keep = self._check_handle_invalid() == "keep"
        if self.getCut() != 0:
            raise StageError(f"{self._describe()}: image_classifier runs the whole model (cut=0); for the features of a "
                             f"cut model use image_featurizer")
        if self.getK() < 1:
            raise StageError(f"{self._describe()}: k must be >= 1; got {self.getK()}")
        self._activation()
        self.require_column(schema, image_column(schema, self.getInputCol()), EXPECTED,
                            accept=lambda t: input_kind(t) is not None)
        fields = list(schema.fields)
        for name, kind in ((self.getPredictionCol(), T.DoubleType()), (self.getProbabilityCol(), VectorUDT()),
                           (self.getLabelNameCol(), T.StringType()), (self.getTopKCol(), TOPK_TYPE)):
            self.require_new_column(T.StructType(fields), name)
            fields.append(T.StructField(name, kind, True))
        if keep:
            self.require_new_column(T.StructType(fields), self.getErrorCol())
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    # -- transform -----------------------------------------------------------------------------------
    def _featurizer(self) -> ImageFeaturizer:
        """The whole model (cut 0) as an image_featurizer with this stage's model and image params."""
        featurizer = ImageFeaturizer()
        featurizer._described_as = self._describe()
        shared = {p.name: self.getOrDefault(p) for p in self.params
                  if featurizer.hasParam(p.name) and p.name not in ("embedModel", "uid")}
        return featurizer._set(**shared).setCut(0).setOutputFormat("array").setOutputCol(_SCORES)

    def _apply(self, dataset: DataFrame) -> DataFrame:
        import dataclasses

        from zoo.stages.workers.images import featurize_images, top_k_columns

        schema = self.transformSchema(dataset.schema)
        self._refuse_detector()
        names = self._label_set()
        classes = self._classes()
        if classes not in (-1, len(names)):
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} outputs {classes} scores per image but "
                             f"its label set {names.name!r} has {len(names)} names; give the model's own labels")
        # softmax and the top k in the worker, on the batch's numpy outputs: in Spark SQL the sort of
        # 1,000 scores per row (and a softmax expression inlined into every column that reads it) costs
        # more than the model
        job = dataclasses.replace(self._featurizer()._executor_job(dataset), top_k=self.getK(),
                                  softmax=self._activation() == "logits")
        probs, index, score = top_k_columns(_SCORES)
        fields = [*dataset.schema.fields, T.StructField(probs, T.ArrayType(T.DoubleType()), True),
                  T.StructField(index, T.ArrayType(T.IntegerType()), True),
                  T.StructField(score, T.ArrayType(T.DoubleType()), True)]
        if self.getHandleInvalid() == "keep":
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        out = dataset.mapInArrow(lambda batches: featurize_images(batches, job), T.StructType(fields))
        table = F.lit(list(names.labels))
        best = F.element_at(F.col(index), 1)
        top = F.transform(F.col(index), lambda i, j: F.struct(i.alias("index"), F.element_at(table, i + 1).alias("label"),
                                                               F.element_at(F.col(score), j + 1).alias("score")))
        out = (out.withColumn(self.getPredictionCol(), best.cast("double"))
               .withColumn(self.getProbabilityCol(), to_vector(dataset.sparkSession, F.col(probs)))
               # guarded: Spark 4.x's element_at on a literal array with a null index gives the last element
               .withColumn(self.getLabelNameCol(), F.when(best.isNotNull(), F.element_at(table, best + 1)))
               .withColumn(self.getTopKCol(), top))
        out = out.select(*[F.col(f"`{f.name}`") for f in schema.fields])
        return attach(out, self.getProbabilityCol(), {**self._featurizer()._provenance(job), "stage": self.zoo_name,
                                                       "labels_sha256": names.sha256, "activation": self._activation()})

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        bad = spark.createDataFrame([*tiny.image_rows()[:2], ("file:///examples/bad.jpg", b"not an image")],
                                    "path string, content binary")
        common = dict(modelName=tiny.tiny_model_path(), preprocess=json.dumps(tiny.PREPROCESS),
                      labels=tiny.tiny_labels_path())
        # one example keeps the kit's cost down: an undecodable image kept, softmax applied in the worker
        return [StageExample(cls(**common, handleInvalid="keep", batchSize=2, k=3), bad)]
