"""The plugin manager: loads ``zoo`` entry points once per process, isolating broken plugins."""

from __future__ import annotations

import functools
from typing import Any, Iterator

import pluggy

from zoo import hookspecs
from zoo._logging import get_logger
from zoo.config import Settings

log = get_logger("plugins")


@functools.lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (entry points are loaded on first use, not at import)."""
    from zoo.config import settings

    s = settings()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in s.disabled_plugins:
        pm.set_blocked(name)
    if s.plugins_autoload:
        _load_entry_points(pm, s)
    pm.check_pending()
    return pm


def _load_entry_points(pm: pluggy.PluginManager, s: Settings) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=hookspecs.PROJECT):
        if ep.name in s.disabled_plugins or pm.has_plugin(ep.name):
            continue
        dist = getattr(ep.dist, "name", "?")
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must never break `import zoo`
            log.warning("skipping plugin %r from distribution %r: %s: %s", ep.name, dist, type(exc).__name__, exc)


def registered_models(settings: Settings) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(plugin name, entries) for each plugin implementing ``zoo_register_models``."""
    pm = manager()
    for impl in pm.hook.zoo_register_models.get_hookimpls():
        if impl.plugin_name in settings.disabled_plugins:
            continue
        try:
            docs = impl.function()
        except Exception as exc:
            log.warning("plugin %r failed in zoo_register_models: %s: %s", impl.plugin_name, type(exc).__name__, exc)
            continue
        yield impl.plugin_name, list(docs or [])
