"""Built-in SparkML stages of sparkzoo, and the base classes plugin authors build on.

Installed as ``zoo.stages`` (the folder ``stages/``; pyproject.toml maps it). The built-in stages
are registered through the ``zoo`` entry point (``zoo.stages.builtin``), the same path third-party
plugins use.

Each stage module holds the driver side of one stage (Params, schema, building the job); what
runs on the executors is in :mod:`zoo.stages.workers`. Shared pieces: :mod:`zoo.stages.base` (the
base classes), :mod:`zoo.stages.params` (the typed param helper and shared param mixins) and
:mod:`zoo.stages.persistence` (stages that save more than their params).

``zoo.stages()`` lists the registered stages. Importing this package makes ``zoo.stages`` the
package itself, so the package is callable and does the same.
"""

import sys
import types

from zoo.lazy import exports

__all__ = ["JvmStage", "StageExample", "ZooEstimator", "ZooModel", "ZooStage", "ZooTransformer"]
# The base classes load on first use: executor-side modules of this package (workers) must import
# without pyspark.ml, which imports pandas into every Python worker.
__getattr__, __dir__ = exports(__name__, {**dict.fromkeys(__all__, "zoo.stages.base"), "JvmStage": "zoo.stages.jvm"})


class _CallablePackage(types.ModuleType):
    def __call__(self):
        from zoo.plugins.stage_registry import stages

        return stages()


sys.modules[__name__].__class__ = _CallablePackage
