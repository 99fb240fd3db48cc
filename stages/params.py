"""Params of sparkzoo's stages, declared once: the typed :func:`param` helper and the mixins several
stages share (:class:`HasModel`, :class:`HasHandleInvalid`, :class:`HasErrorCol`).

A param is declared by its doc and type; its name is the attribute it is assigned to, and every
stage class gets ``getX``/``setX`` for each of its params generated (see
:meth:`zoo.stages.base.ZooStage.__init_subclass__`), so a stage writes no accessor boilerplate::

    class Blur(ZooTransformer, HasInputCol, HasOutputCol):
        ksize = param("kernel size in pixels (odd)", int)   # Blur().setKsize(5).getKsize() == 5
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasHandleInvalid as _SparkHasHandleInvalid

from zoo.cluster.delivery import to_ship_mode
from zoo.errors import StageError
from zoo.runtime.sessions import DEVICES, OPTIMIZATION_LEVELS, RuntimeOptions


def to_str_dict(value: Any) -> dict[str, str]:
    """TypeConverter for {str: str} params (JSON-serialisable, so they persist)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"expected a dict of column names to column names, got {value!r}")
    return dict(value)


def to_cut(value: Any) -> int | str:
    """A cut is a layer count (int >= 0) or a tensor name."""
    if isinstance(value, bool):
        raise TypeError(f"cut must be a layer count or a tensor name, got {value!r}")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        if value < 0:
            raise TypeError(f"cut must be >= 0, got {value!r}")
        return int(value)
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    raise TypeError(f"cut must be a layer count or a tensor name, got {value!r}")


_CONVERTERS: list[tuple[Any, Callable[[Any], Any]]] = [
    (str, TypeConverters.toString), (int, TypeConverters.toInt), (float, TypeConverters.toFloat),
    (bool, TypeConverters.toBoolean), (list[str], TypeConverters.toListString), (list[int], TypeConverters.toListInt),
    (list[float], TypeConverters.toListFloat), (dict[str, str], to_str_dict),
]


class ZooParam(Param):
    """A Param named after the class attribute it is assigned to (``__set_name__``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


def param(doc: str, kind: Any = str) -> Param:
    """A param documented by ``doc`` whose values are converted for ``kind``: ``str``, ``int``,
    ``float``, ``bool``, ``list[str]``, ``list[int]``, ``list[float]``, ``dict[str, str]``, or a
    converter function (``value -> value``, raising TypeError on a bad value)."""
    converter = next((c for k, c in _CONVERTERS if k == kind), None)
    if converter is None:
        if isinstance(kind, type) or not callable(kind):
            raise TypeError(f"param type {kind!r} has no converter; pass a converter function instead")
        converter = kind
    return ZooParam(Params._dummy(), "unnamed", doc, typeConverter=converter)


class HasHandleInvalid(_SparkHasHandleInvalid):
    """``handleInvalid``: what a row the stage cannot process does (its class documentation says what
    "invalid" means for it and what ``keep`` keeps). Default ``error``."""

    INVALID_MODES = ("error", "skip", "keep")
    handleInvalid = param("what an invalid row does: error (fail, naming the row), skip (drop the row), keep (keep "
                          "the row; see the stage's documentation for what it gets)")

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(handleInvalid="error")

    def _check_handle_invalid(self) -> str:
        mode = self.getHandleInvalid()
        if mode not in self.INVALID_MODES:
            raise StageError(f"{self._describe()}: handleInvalid must be error, skip or keep; got {mode!r}")
        return mode


class HasErrorCol(Params):
    """``errorCol``: where ``handleInvalid='keep'`` writes why a row failed. Default ``error``."""

    errorCol = param("column for the reason a row failed (handleInvalid=keep only)")

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(errorCol="error")


class HasAllowMixedProvenance(Params):
    """``allowMixedProvenance``: whether a stage that combines feature columns (or averages rows) may mix features
    made by different models, cuts or preprocessing (:mod:`zoo.lineage`). Default False: refused, naming both."""

    allowMixedProvenance = param("combine features made by different models, cuts or preprocessing", bool)

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(allowMixedProvenance=False)

    def _refuse_mixed_rows(self, dataset: Any, columns: list[str]) -> None:
        """Refuse ``columns`` whose rows come from union branches made differently (Spark shows only the first
        branch's provenance on a union)."""
        if self.getAllowMixedProvenance():
            return
        from zoo import lineage
        from zoo.errors import StageError

        for column in columns:
            why = lineage.mixed(dataset, column)
            if why:
                raise StageError(f"{self._describe()}: the rows of column {column!r} come from a union of features made "
                                 f"differently ({why}); they are not comparable. Set allowMixedProvenance=True to use "
                                 "them anyway")


_SPECS: dict[tuple, Any] = {}


class HasModel(Params):
    """``modelName``, ``cut``, ``modelSha256`` (pin), ``batchSize``, ``device``, ``numThreads``,
    ``graphOptimization``, ``executionProviders``, ``shipModel``:
    the params of a stage that runs an ONNX model, and its resolution on the driver."""

    modelName = param("the model: a zoo name or alias, 'sha256:<hex>', or a path to an .onnx file")
    cut = param("layers dropped from the head (0 = full model), or the name of the tensor to stop at", to_cut)
    modelSha256 = param("sha256 the model must resolve to ('' = whatever modelName resolves to now); pins pipelines")
    batchSize = param("rows per ONNX Runtime call (0 = automatic: 4 on CPU, where larger batches only cost memory; "
                      "64 on a GPU)", int)
    device = param("auto (CUDA after a successful probe, else CPU), cpu or cuda")
    numThreads = param("ONNX Runtime intra-op threads per task (0 = the task's CPUs)", int)
    graphOptimization = param("ONNX Runtime graph optimisation level: disable, basic, extended or all (default; on "
                              "CPU the node caches the optimised model once). Lower it for a model that an "
                              "optimisation breaks or slows")
    executionProviders = param("ONNX Runtime execution providers to use, in order of preference (e.g. "
                               "['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']; "
                               "`zoo doctor` lists this machine's); empty = chosen from device", list[str])
    shipModel = param("send the model file to executors through Spark: auto (when its only routes are files on the "
                      "driver's machine and some executor's node cache lacks it), always, or never", to_ship_mode)

    def _set_model_defaults(self) -> None:
        self._setDefault(modelName="", modelSha256="", batchSize=0, device="auto", numThreads=0, shipModel="auto",
                         graphOptimization="all", executionProviders=[])
        if not self.hasDefault(self.cut):
            self._setDefault(cut=0)

    def _check_model_params(self) -> None:
        if not self.getModelName():
            raise StageError(f"{self._describe()}: modelName is not set; give a zoo name (see `zoo ls`), sha256: or a path")
        if self.getBatchSize() < 0:
            raise StageError(f"{self._describe()}: batchSize must be >= 1, or 0 for automatic; got {self.getBatchSize()}")
        if self.getDevice() not in DEVICES:
            raise StageError(f"{self._describe()}: device must be one of {', '.join(DEVICES)}; got {self.getDevice()!r}")
        if self.getNumThreads() < 0:
            raise StageError(f"{self._describe()}: numThreads must be >= 0; got {self.getNumThreads()}")
        if self.getGraphOptimization() not in OPTIMIZATION_LEVELS:
            raise StageError(f"{self._describe()}: graphOptimization must be one of {', '.join(OPTIMIZATION_LEVELS)}; "
                             f"got {self.getGraphOptimization()!r}")

    def _runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(device=self.getDevice(), intra_op_threads=self.getNumThreads(),
                              optimization=self.getGraphOptimization(), providers=tuple(self.getExecutionProviders()))

    def _model_spec(self, spark, preprocess: Any = "registry", locale: str | None = None):
        """Resolve the model on the driver (once per process and settings) and check the pin
        (``locale``: run a copy of a text model in that locale; see zoo.hub.locale_copy)."""
        from zoo.cluster import delivery, forwarding
        from zoo.cluster.watching import current_events
        from zoo.config import settings
        from zoo.runtime import models

        name, cut, pin = self.getModelName(), self.getCut(), self.getModelSha256()
        key = (name, cut, json.dumps(preprocess, sort_keys=True), str(settings().home), settings().registries,
               self.getShipModel(), delivery.master_of(spark), forwarding.forwarded_env(), id(spark), locale)
        if key not in _SPECS:
            spec, runnable = models.prepare(name, cut, preprocess=preprocess, locale=locale)
            _SPECS[key] = delivery.prepare(spark, spec, runnable, self.getShipModel())
        spec = dataclasses.replace(_SPECS[key], events=current_events())
        if pin and pin != spec.source_sha256:
            raise StageError(
                f"{self._describe()}: model {name!r} now resolves to sha256 {spec.source_sha256}, but this stage is pinned "
                f"to {pin}. Use modelName='sha256:{pin}' (served by the cache or ZOO_MIRRORS) or clear modelSha256"
            )
        return spec


class HasImageInput(Params):
    """``preprocess``, ``maxPixels``, ``fastDecode``, ``decode``: how a stage that runs a zoo model on images
    (image_featurizer, image_classifier) decodes and prepares them. ``inputCol`` comes from SparkML."""

    preprocess = param("how images are prepared: '' for the registry's recipe, a preset name (imagenet, "
                       "efficientnet-lite, none) or a JSON object in the registry's preprocess format")
    maxPixels = param("images with more pixels are invalid (checked from the header)", int)
    fastDecode = param("decode JPEGs at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT) when they stay at least as large "
                       "as the resize target: faster decoding, slightly different pixels than full decoding + resize",
                       bool)
    decode = param("where encoded images are decoded: cpu (OpenCV; default), gpu (nvImageCodec on the CUDA device, "
                   "OpenCV with a log line where it cannot run, and per image for those it rejects) or auto (the GPU "
                   "when it can, silently)")

    def __init__(self, *args: Any):
        from zoo.runtime.imaging import DEFAULT_MAX_PIXELS

        super().__init__(*args)
        self._setDefault(preprocess="", maxPixels=DEFAULT_MAX_PIXELS, fastDecode=False, decode="cpu")

    def _check_decode(self) -> str:
        from zoo.runtime.gpu_decode import DECODES

        if self.getDecode() not in DECODES:
            raise StageError(f"{self._describe()}: decode must be one of {', '.join(DECODES)}; got {self.getDecode()!r}")
        return self.getDecode()

    def _preprocess_value(self) -> Any:
        """'registry', a preset name, or the recipe as a dict."""
        text = self.getPreprocess().strip()
        if not text:
            return "registry"
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise StageError(f"{self._describe()}: preprocess is not valid JSON: {exc}") from None
        return text

    def _embedded_preprocess(self) -> Any:
        return self._preprocess_value()

