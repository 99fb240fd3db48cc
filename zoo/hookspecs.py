"""Hook specifications for sparkzoo plugins (pluggy project name ``zoo``).

A plugin is any module or object with functions marked ``@zoo.hookimpl``, published through the
``zoo`` entry-point group::

    [project.entry-points.zoo]
    my_models = "my_package.zoo_plugin"
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models() -> list[dict[str, Any]]:
    """Return extra registry entries (dicts in the ``registry.schema.json`` model format).

    They are validated like any registry and merged after the built-in registry, before
    ``ZOO_REGISTRY`` and the user registry.
    """
