"""sparkzoo: pretrained ONNX networks for Apache Spark.

The public API is what README.md documents::

    import zoo
    path = zoo.pull("resnet50")        # verified local file, downloaded once per node
    zoo.models()                       # every model the registries know
    zoo.info("resnet50")               # entry + cache status
"""

from __future__ import annotations

from zoo import errors
from zoo._api import VerifyResult, add, cut, cuts, export_mirror, info, models, pull, remove, verify
from zoo._cuts import Cut
from zoo._pipeline import pipeline, read_images
from zoo._runtime import load_count as model_loads
from zoo._stage_registry import StageInfo, stage, stages
from zoo.hookspecs import hookimpl, hookspec
from zoo.registry import ModelEntry

__version__ = "0.1.0"

__all__ = [
    "Cut",
    "ModelEntry",
    "StageInfo",
    "VerifyResult",
    "add",
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
    "stage",
    "stages",
    "verify",
    "__version__",
]
