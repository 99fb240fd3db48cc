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


@hookspec
def zoo_register_stages() -> list[type]:
    """Return stage classes (subclasses of ``zoo.stages.ZooTransformer`` / ``ZooEstimator``).

    Each needs a unique ``zoo_name``; ``zoo.stage(name, **params)`` builds it and the conformance
    kit checks it.
    """


@hookspec
def zoo_register_sources() -> dict[str, object]:
    """Return {URL scheme: opener} for extra download sources.

    An opener is called as ``opener(url, settings, offset, validator)`` and returns a
    ``zoo.hub.sources.Stream`` positioned at ``offset`` (or at 0 when it cannot seek).
    """
