"""Built-in SparkML stages of sparkzoo, and the base classes plugin authors build on.

Installed as ``zoo.stages``. The built-in stages are registered through the ``zoo`` entry point
(``zoo.stages._plugin``), the same path third-party plugins use.

``zoo.stages()`` lists the registered stages. Importing this package makes ``zoo.stages`` the
package itself, so the package is callable and does the same.
"""

import sys
import types

from zoo.stages._base import StageExample, ZooEstimator, ZooModel, ZooStage, ZooTransformer

__all__ = ["StageExample", "ZooEstimator", "ZooModel", "ZooStage", "ZooTransformer"]


class _CallablePackage(types.ModuleType):
    def __call__(self):
        from zoo._stage_registry import stages

        return stages()


sys.modules[__name__].__class__ = _CallablePackage
