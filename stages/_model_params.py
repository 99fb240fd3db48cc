"""Params and driver-side model resolution shared by the stages that run an ONNX model."""

from __future__ import annotations

import json
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

from zoo._runtime import DEVICES, RuntimeOptions
from zoo.cluster.delivery import to_ship_mode
from zoo.errors import StageError

_SPECS: dict[tuple, Any] = {}


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


class HasModel(Params):
    """``modelName``, ``cut``, ``modelSha256`` (pin), ``batchSize``, ``device``, ``numThreads``, ``shipModel``."""

    modelName = Param(Params._dummy(), "modelName",
                      "the model: a zoo name or alias, 'sha256:<hex>', or a path to an .onnx file", TypeConverters.toString)
    cut = Param(Params._dummy(), "cut", "layers dropped from the head (0 = full model), or the name of the tensor to stop at",
                to_cut)
    modelSha256 = Param(Params._dummy(), "modelSha256",
                        "sha256 the model must resolve to ('' = whatever modelName resolves to now); pins pipelines",
                        TypeConverters.toString)
    batchSize = Param(Params._dummy(), "batchSize",
                      "rows per ONNX Runtime call (0 = automatic: 4 on CPU, where larger batches only cost memory; 64 on a GPU)",
                      TypeConverters.toInt)
    device = Param(Params._dummy(), "device", "auto (CUDA after a successful probe, else CPU), cpu or cuda",
                   TypeConverters.toString)
    numThreads = Param(Params._dummy(), "numThreads", "ONNX Runtime intra-op threads per task (0 = the task's CPUs)",
                       TypeConverters.toInt)
    shipModel = Param(Params._dummy(), "shipModel",
                      "send the model file to executors through Spark: auto (when its only routes are files on the "
                      "driver's machine and some executor's node cache lacks it), always, or never",
                      to_ship_mode)

    def _set_model_defaults(self) -> None:
        self._setDefault(modelName="", modelSha256="", batchSize=0, device="auto", numThreads=0, shipModel="auto")
        if not self.hasDefault(self.cut):
            self._setDefault(cut=0)

    def setModelName(self, value: str):
        return self._set(modelName=value)

    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def setCut(self, value: int | str):
        return self._set(cut=value)

    def getCut(self) -> int | str:
        return self.getOrDefault(self.cut)

    def setModelSha256(self, value: str):
        return self._set(modelSha256=value)

    def getModelSha256(self) -> str:
        return self.getOrDefault(self.modelSha256)

    def setBatchSize(self, value: int):
        return self._set(batchSize=value)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def setDevice(self, value: str):
        return self._set(device=value)

    def getDevice(self) -> str:
        return self.getOrDefault(self.device)

    def setNumThreads(self, value: int):
        return self._set(numThreads=value)

    def getNumThreads(self) -> int:
        return self.getOrDefault(self.numThreads)

    def setShipModel(self, value: str | bool):
        return self._set(shipModel=value)

    def getShipModel(self) -> str:
        return self.getOrDefault(self.shipModel)

    def _check_model_params(self) -> None:
        if not self.getModelName():
            raise StageError(f"{self._describe()}: modelName is not set; give a zoo name (see `zoo ls`), sha256: or a path")
        if self.getBatchSize() < 0:
            raise StageError(f"{self._describe()}: batchSize must be >= 1, or 0 for automatic; got {self.getBatchSize()}")
        if self.getDevice() not in DEVICES:
            raise StageError(f"{self._describe()}: device must be one of {', '.join(DEVICES)}; got {self.getDevice()!r}")
        if self.getNumThreads() < 0:
            raise StageError(f"{self._describe()}: numThreads must be >= 0; got {self.getNumThreads()}")

    def _runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(device=self.getDevice(), intra_op_threads=self.getNumThreads())

    def _model_spec(self, spark, preprocess: Any = "registry"):
        """Resolve the model on the driver (once per process and settings) and check the pin."""
        import dataclasses

        from zoo import _modelref
        from zoo.cluster import delivery, forwarding
        from zoo.cluster.watching import current_events
        from zoo.config import settings

        name, cut, pin = self.getModelName(), self.getCut(), self.getModelSha256()
        key = (name, cut, json.dumps(preprocess, sort_keys=True), str(settings().home), settings().registries,
               self.getShipModel(), delivery.master_of(spark), forwarding.forwarded_env(), id(spark))
        if key not in _SPECS:
            spec, runnable = _modelref.resolve(name, cut, preprocess=preprocess)
            _SPECS[key] = delivery.prepare(spark, spec, runnable, self.getShipModel())
        spec = dataclasses.replace(_SPECS[key], events=current_events())
        if pin and pin != spec.source_sha256:
            raise StageError(
                f"{self._describe()}: model {name!r} now resolves to sha256 {spec.source_sha256}, but this stage is pinned "
                f"to {pin}. Use modelName='sha256:{pin}' (served by the cache or ZOO_MIRRORS) or clear modelSha256"
            )
        return spec
