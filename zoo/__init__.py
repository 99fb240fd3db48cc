"""sparkzoo: pretrained ONNX networks for Apache Spark.

The public API is what docs/python-api.md documents::

    import zoo
    path = zoo.pull("resnet50")        # verified local file, downloaded once per node
    zoo.models()                       # every model the registries know
    zoo.info("resnet50")               # entry + cache status
    zoo.pipeline("resnet50", cut=1)    # a pyspark.ml.Pipeline: image files -> features

Where things live (ARCHITECTURE.md has the picture): :mod:`zoo.hub` (name -> verified file),
:mod:`zoo.runtime` (what runs a model on executors), :mod:`zoo.cluster` (driver <-> executors),
:mod:`zoo.plugins` (hooks, plugin manager, stage registry), :mod:`zoo.stages` (the SparkML
stages), :mod:`zoo.pipelines`, :mod:`zoo.testing` (the conformance kit), :mod:`zoo.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo import errors
from zoo.lazy import exports
from zoo.plugins.hookspecs import hookimpl, hookspec
from zoo.version import __version__

# Everything else loads on first use (zoo.lazy): Spark's Python workers import this package to run
# a stage's executor code, and the driver-side API pulls in pyspark.ml, which imports pandas
# (~50 MB per worker process that never uses it).
_WHERE = {
    **dict.fromkeys(["VerifyResult", "add", "cache_dir", "cache_size", "cut", "cuts", "info", "models", "prune_cache",
                     "pull", "remove", "verify"], "zoo.hub.api"),
    "Cut": "zoo.hub.layer_cuts",
    "ModelEntry": "zoo.hub.registry",
    "export_mirror": "zoo.hub.mirror",
    "model_loads": "zoo.runtime.sessions",
    "spark_jar": "zoo.runtime.jvm_functions",
    "pipeline": "zoo.pipelines", "read_images": "zoo.pipelines", "list_images": "zoo.pipelines",
    "read_images_stream": "zoo.pipelines",
    "provenance": "zoo.lineage",
    "featurize_incremental": "zoo.incremental", "IncrementalReport": "zoo.incremental",
    "StageInfo": "zoo.plugins.stage_registry", "stage": "zoo.plugins.stage_registry",
    "cluster": "zoo.cluster",  # driver <-> executors: forwarding, delivery, watching, environment archives
    "stages": "zoo.stages",  # the callable package (zoo.stages() lists the registered stages)
}
__getattr__, __dir__ = exports(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from zoo import cluster, stages
    from zoo.hub.api import (VerifyResult, add, cache_dir, cache_size, cut, cuts, info, models, prune_cache, pull,
                             remove, verify)
    from zoo.hub.layer_cuts import Cut
    from zoo.hub.mirror import export_mirror
    from zoo.hub.registry import ModelEntry
    from zoo.incremental import IncrementalReport, featurize_incremental
    from zoo.lineage import provenance
    from zoo.pipelines import pipeline, read_images
    from zoo.plugins.stage_registry import StageInfo, stage
    from zoo.runtime.jvm_functions import spark_jar
    from zoo.runtime.sessions import model_loads

__all__ = [
    "Cut", "IncrementalReport", "featurize_incremental", "ModelEntry", "StageInfo", "VerifyResult", "add", "cache_dir", "cache_size", "cluster", "cut", "cuts",
    "errors", "export_mirror", "hookimpl", "hookspec", "info", "list_images", "model_loads", "models", "pipeline", "provenance", "prune_cache",
    "pull", "read_images", "read_images_stream", "remove", "spark_jar", "stage", "stages", "verify", "__version__",
]
