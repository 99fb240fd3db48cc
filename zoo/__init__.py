"""sparkzoo: pretrained ONNX networks for Apache Spark.

The public API is what README.md documents::

    import zoo
    path = zoo.pull("resnet50")        # verified local file, downloaded once per node
    zoo.models()                       # every model the registries know
    zoo.info("resnet50")               # entry + cache status
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo import errors
from zoo.hookspecs import hookimpl, hookspec

# Everything else loads on first use (PEP 562): Spark's Python workers import this package to run
# a featurizer's executor code, and the driver-side API pulls in pyspark.ml, which imports pandas
# (~50 MB per worker process that never uses it).
_LAZY = {
    "VerifyResult": "zoo._api", "add": "zoo._api", "cut": "zoo._api", "cuts": "zoo._api",
    "export_mirror": "zoo._api", "info": "zoo._api", "models": "zoo._api", "pull": "zoo._api",
    "remove": "zoo._api", "verify": "zoo._api",
    "Cut": "zoo._cuts",
    "spark_jar": "zoo._jvm_functions",
    "pipeline": "zoo._pipeline", "read_images": "zoo._pipeline",
    "StageInfo": "zoo._stage_registry", "stage": "zoo._stage_registry",
    "ModelEntry": "zoo.registry",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from zoo._api import VerifyResult, add, cut, cuts, export_mirror, info, models, pull, remove, verify
    from zoo._cuts import Cut
    from zoo._jvm_functions import spark_jar
    from zoo._pipeline import pipeline, read_images
    from zoo._runtime import load_count as model_loads
    from zoo._stage_registry import StageInfo, stage
    from zoo.registry import ModelEntry


def __getattr__(name: str):
    import importlib

    if name == "model_loads":
        from zoo._runtime import load_count

        value = load_count
    elif name == "cluster":  # driver <-> executors: forwarding, delivery, watching, environment archives
        value = importlib.import_module("zoo.cluster")
    elif name == "stages":  # the callable package (zoo.stages() lists the registered stages)
        value = importlib.import_module("zoo.stages")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "Cut",
    "ModelEntry",
    "StageInfo",
    "VerifyResult",
    "add",
    "cluster",
    "cut",
    "cuts",
    "errors",
    "export_mirror",
    "hookimpl",
    "hookspec",
    "info",
    "model_loads",
    "models",
    "pipeline",
    "read_images",
    "pull",
    "remove",
    "spark_jar",
    "stage",
    "stages",
    "verify",
    "__version__",
]
