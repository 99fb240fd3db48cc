"""Built-in SparkML stages of sparkzoo, and the base classes plugin authors build on.

Installed as ``zoo.stages``. The built-in stages are registered through the ``zoo`` entry point
(``zoo.stages._plugin``), the same path third-party plugins use.

``zoo.stages()`` lists the registered stages. Importing this package makes ``zoo.stages`` the
package itself, so the package is callable and does the same.
"""

import sys
import types

__all__ = ["StageExample", "ZooEstimator", "ZooModel", "ZooStage", "ZooTransformer"]


def __getattr__(name: str):
    # The base classes load on first use: executor-side modules of this package (_inference) must
    # import without pyspark.ml, which imports pandas into every Python worker.
    if name in __all__:
        from zoo.stages import _base

        return getattr(_base, name)
    raise AttributeError(f"module 'zoo.stages' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self):
        from zoo._stage_registry import stages

        return stages()


sys.modules[__name__].__class__ = _CallablePackage
