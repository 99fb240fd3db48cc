"""``object_detector``: what is where in each image, as boxes in the original image's pixels.

No SparkML peer runs detection: SynapseML and sparkdl stop at classification, and Spark's
``predict_batch_udf`` leaves the decoding to the user. Here a zoo detector's recipe (the registry's
``detection`` and ``preprocess``, :mod:`zoo.runtime.detection`) says how its authors prepare an
image and turn the raw outputs into boxes; the stage runs it in ``mapInArrow``
(:mod:`zoo.stages.workers.detections`) and adds one column:

``array<struct<label: string, classIndex: int, score: float, x0: float, y0: float, x1: float, y1: float>>``

sorted by score, best first. Every check that can be made on the driver is made there, before
Spark runs a task: the model is a detector (a classifier is pointed to ``image_classifier``), its
recipe fits the graph's outputs, the class filter names classes of its label set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyspark import keyword_only
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooTransformer
from zoo.stages.params import HasErrorCol, HasHandleInvalid, HasImageInput, HasModel, param
from zoo.stages.workers.image_input import EXPECTED, ImageInput, image_column, input_kind

from zoo.errors import StageError, ZooError
from zoo.lineage import attach, record

DETECTION_TYPE = T.ArrayType(T.StructType([
    T.StructField("label", T.StringType(), True), T.StructField("classIndex", T.IntegerType(), False),
    T.StructField("score", T.FloatType(), False), T.StructField("x0", T.FloatType(), False),
    T.StructField("y0", T.FloatType(), False), T.StructField("x1", T.FloatType(), False),
    T.StructField("y1", T.FloatType(), False)]), False)


@dataclass(frozen=True)
class Detector:
    """What the driver knows of a detector: its recipe bound to the graph, its class names, its pixels."""

    recipe: Any  # zoo.runtime.detection.Recipe
    bound: tuple[tuple[str, str], ...]
    labels: tuple[str, ...]
    labels_sha256: str | None
    preprocess: dict[str, Any] | None


_DETECTORS: dict[tuple, Detector] = {}


def detector_of(model: str, detection: str = "", labels: str = "", described_as: str = "") -> Detector:
    """The recipe, outputs and class names of ``model`` (a zoo name, sha256 or file), checked against
    its graph; :class:`StageError` naming the model when it is no detector or its recipe does not fit.
    A file whose sha256 a registry lists (a catalogue model kept elsewhere) gets that entry's recipe."""
    from zoo.config import settings

    s = settings()  # the same name means another model under another ZOO_HOME or registry
    key = (model, detection, labels, str(s.home), s.registries)
    if key not in _DETECTORS:
        _DETECTORS[key] = _detector(model, detection, labels, described_as or f"model {model!r}")
    return _DETECTORS[key]


def _detector(model: str, detection: str, labels: str, who: str) -> Detector:
    from zoo.hub import labels as label_sets
    from zoo.hub import registry, resolver
    from zoo.hub.onnx_files import graph_outputs
    from zoo.runtime.detection import Recipe

    try:
        located = resolver.locate(model)
        entry = located.entry or registry.load().get(located.sha256)
        outputs = graph_outputs(located.path)
    except ZooError as exc:
        raise StageError(f"{who}: {exc}") from None
    name = entry.name if entry is not None else model
    if detection:
        try:
            given = json.loads(detection)
        except ValueError as exc:
            raise StageError(f"{who}: detection is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise StageError(f"{who}: detection must be a JSON object with a family")
    elif entry is not None and entry.detection:
        given = entry.detection
    elif entry is not None and entry.task != "object-detection":
        raise StageError(f"{who}: model {name!r} is not a detector (task {entry.task}); "
                         + ("use image_classifier (`zoo predict`) or image_featurizer" if entry.task ==
                            "image-classification" else "object_detector runs detectors (`zoo ls --task object-detection`)"))
    elif entry is not None:
        raise StageError(f"{who}: model {name!r} is a detector without a postprocessing recipe in the registry; give "
                         "detection='{\"family\": ...}' (zoo.runtime.detection lists the families)")
    else:
        raise StageError(f"{who}: {model!r} is no registry model, so nothing says how to decode its outputs; give "
                         "detection='{\"family\": \"yolox\"}' (or ultraface, decoded, yolo_region), or register it once "
                         "with `zoo add FILE --name NAME --detector yolox --labels coco-80`")
    try:
        recipe = Recipe.from_dict(given, repr(name))
        bound = recipe.bind(outputs, repr(name))
    except ZooError as exc:
        raise StageError(f"{who}: {exc}") from None
    names: tuple[str, ...] = ()
    sha = None
    if labels or (entry is not None and entry.labels is not None):
        try:
            found = label_sets.resolve(labels, name)
        except ZooError as exc:
            raise StageError(f"{who}: {exc}") from None
        names, sha = found.labels, found.sha256
        classes = recipe.classes({role: dict(outputs)[output] for role, output in bound.items()})
        if classes is not None and classes + recipe.class_offset > len(names):
            raise StageError(f"{who}: model {name!r} scores {classes} classes but its label set {found.name!r} has "
                             f"{len(names)} names; give the model's own labels")
    preprocess = located.preprocess or (entry.preprocess if entry is not None else None)
    return Detector(recipe, tuple(bound.items()), names, sha, preprocess)


class ObjectDetector(ZooTransformer, HasModel, HasImageInput, HasInputCol, HasOutputCol, HasHandleInvalid,
                     HasErrorCol):
    """Detect objects (or faces) with a zoo detector: a column of boxes per image, best first.

    ``scoreThreshold``, ``nmsIou``: -1 (default) keeps what the model's authors use (its recipe);
    ``maxDetections``: the most boxes per image; ``classes``: only these class names. The input
    column holds encoded bytes, Spark's image struct or a path, as for image_featurizer, and
    ``handleInvalid`` works the same (``keep``: a null list and the reason in ``errorCol``)."""

    zoo_name = "object_detector"
    zoo_streaming = True  # checked by the kit's streaming check

    scoreThreshold = param("the lowest score a box may have (-1: the model's recipe says)", float)
    nmsIou = param("boxes of one class overlapping a better one by more than this IoU are dropped (-1: the model's "
                   "recipe says)", float)
    maxDetections = param("the most boxes kept per image, best first", int)
    classes = param("only boxes of these class names (empty: all)", list[str])
    labels = param("class names: '' for the registry's label set of the model, a shipped set name (coco-80, coco-91, "
                   "voc-20, face) or the path of a label file")
    detection = param("the postprocessing recipe as JSON ('' = the registry's), for models no registry describes")

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, modelName: str | None = None,
                 modelSha256: str | None = None, scoreThreshold: float | None = None, nmsIou: float | None = None,
                 maxDetections: int | None = None, classes: list | None = None, labels: str | None = None,
                 detection: str | None = None, preprocess: str | None = None, handleInvalid: str | None = None,
                 errorCol: str | None = None, batchSize: int | None = None, device: str | None = None,
                 numThreads: int | None = None, graphOptimization: str | None = None,
                 executionProviders: list | None = None, maxPixels: int | None = None, shipModel: bool | None = None,
                 fastDecode: bool | None = None, decode: str | None = None):
        super().__init__()
        self._setDefault(inputCol="content", outputCol="detections", cut=0, scoreThreshold=-1.0, nmsIou=-1.0,
                         maxDetections=100, classes=[], labels="", detection="")
        self._set_model_defaults()
        self._set(**self._input_kwargs)

    # -- driver-side checks ------------------------------------------------------------------------
    def _detector(self) -> Detector:
        self._check_model_params()
        return detector_of(self.getModelName(), self.getDetection(), self.getLabels(), self._describe())

    def _thresholds(self, detector: Detector) -> tuple[float, float]:
        score, iou = self.getScoreThreshold(), self.getNmsIou()
        for name, value in (("scoreThreshold", score), ("nmsIou", iou)):
            if value != -1.0 and not 0.0 <= value <= 1.0:
                raise StageError(f"{self._describe()}: {name} must be in [0, 1], or -1 for the model's recipe; got {value}")
        return (detector.recipe.score_threshold if score == -1.0 else score,
                detector.recipe.nms_iou if iou == -1.0 else iou)

    def _allowed(self, detector: Detector) -> tuple[int, ...] | None:
        wanted = self.getClasses()
        if not wanted:
            return None
        index = {n: i for i, n in enumerate(detector.labels)}
        unknown = [c for c in wanted if c not in index]
        if unknown:
            sample = ", ".join(n for n in detector.labels[:8] if n not in ("N/A", "background"))
            raise StageError(f"{self._describe()}: classes {unknown} are not in the model's label set "
                             f"({len(detector.labels)} names: {sample}, ...)")
        return tuple(sorted(index[c] for c in wanted))

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        self._check_model_params()
        keep = self._check_handle_invalid() == "keep"
        if self.getCut() != 0:
            raise StageError(f"{self._describe()}: object_detector runs the whole model (cut=0); for the features of a "
                             "cut detector use image_featurizer")
        if self.getMaxDetections() < 1:
            raise StageError(f"{self._describe()}: maxDetections must be >= 1; got {self.getMaxDetections()}")
        if self.getFastDecode():
            raise StageError(f"{self._describe()}: fastDecode is not available for detection (a reduced decode would "
                             "move the boxes); leave it False")
        self.require_column(schema, image_column(schema, self.getInputCol()), EXPECTED,
                            accept=lambda t: input_kind(t) is not None)
        self.require_new_column(schema, self.getOutputCol())
        fields = [*schema.fields, T.StructField(self.getOutputCol(), DETECTION_TYPE, True)]
        if keep:
            self.require_new_column(T.StructType(fields), self.getErrorCol())
            fields.append(T.StructField(self.getErrorCol(), T.StringType(), True))
        return T.StructType(fields)

    # -- transform ---------------------------------------------------------------------------------
    def _executor_job(self, dataset: DataFrame):
        from zoo.stages.workers.detections import DetectJob
        from zoo.stages.workers.images import ImageJob

        detector = self._detector()
        threshold, iou = self._thresholds(detector)
        allowed = self._allowed(detector)
        wanted = self._preprocess_value()
        preprocess = detector.preprocess if wanted == "registry" else wanted
        if preprocess is None:
            raise StageError(f"{self._describe()}: model {self.getModelName()!r} has no preprocessing recipe; set "
                             "preprocess to a JSON recipe (exact or letterbox resize to the model's input)")
        spec = self._model_spec(dataset.sparkSession, preprocess=preprocess)
        mode = (spec.preprocess or {}).get("resize", {}).get("mode")
        own_size = len(spec.input.get("shape") or []) == 3  # one image at its own size (Faster R-CNN)
        if (spec.preprocess or {}).get("crop") or mode not in (("shorter_side",) if own_size else ("exact", "letterbox")):
            raise StageError(f"{self._describe()}: a detector's preprocessing must resize to the input (exact or "
                             "letterbox; shorter_side for a graph taking one image of any size) without a crop, or "
                             f"the boxes cannot be mapped back; got resize {mode!r}")
        images = ImageJob(spec=spec, image=ImageInput.of(dataset.schema, self.getInputCol(), self.getMaxPixels()),
                          batch_size=self.getBatchSize(), runtime=self._runtime_options(),
                          handle_invalid=self.getHandleInvalid(), error_col=self.getErrorCol(),
                          output_col=self.getOutputCol(), stage=self._describe())
        return DetectJob(images=images, recipe=detector.recipe, bound=detector.bound, labels=detector.labels,
                         threshold=threshold, iou=iou, max_detections=self.getMaxDetections(), allowed=allowed)

    def _apply(self, dataset: DataFrame) -> DataFrame:
        from zoo.stages.workers.detections import detect_images

        schema = self.transformSchema(dataset.schema)
        self._check_decode()
        job = self._executor_job(dataset)
        out = dataset.mapInArrow(lambda batches: detect_images(batches, job), schema)
        import cv2

        provenance = record(self.zoo_name, job.images.spec, width=None, output=",".join(dict(job.bound).values()),
                            device=self.getDevice(), opencv=cv2.__version__)
        # as JSON text: Spark's column metadata holds no nested arrays (YOLOv2's anchors)
        provenance.update(detection=json.dumps(job.recipe.to_dict(), sort_keys=True), threshold=job.threshold,
                          nms_iou=job.iou,
                          labels_sha256=self._detector().labels_sha256)
        return attach(out, self.getOutputCol(), provenance)

    @classmethod
    def zoo_examples(cls, spark):
        from zoo.testing import tiny

        bad = spark.createDataFrame([*tiny.image_rows()[:3], ("file:///examples/bad.jpg", b"not an image")],
                                    "path string, content binary")
        common = dict(modelName=tiny.tiny_detector_path(), detection=json.dumps(tiny.DETECTOR_RECIPE),
                      preprocess=json.dumps(tiny.DETECTOR_PREPROCESS), labels=tiny.tiny_detector_labels_path())
        return [StageExample(cls(**common, handleInvalid="keep", batchSize=2), bad)]
