"""Plugins: how stages, models and download sources get into sparkzoo (pluggy project ``zoo``).

- :mod:`zoo.plugins.hookspecs`: the hooks a plugin implements (``zoo_register_stages``,
  ``zoo_register_models``, ``zoo_register_sources``) and the ``hookimpl`` marker;
- :mod:`zoo.plugins.manager`: loads the ``zoo`` entry points, isolating broken plugins;
- :mod:`zoo.plugins.stage_registry`: every registered stage by its short name (``zoo.stage``,
  ``zoo stages``), broken ones listed with the reason.

sparkzoo's own stages are a plugin like any other (``zoo.stages.builtin``).
"""

from zoo.plugins.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
