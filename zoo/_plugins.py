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
    _load_entry_points(pm, s)
    pm.check_pending()
    return pm


_DISTRIBUTIONS: dict[str, tuple[str, str]] = {}


def distribution(plugin_name: str) -> tuple[str, str]:
    """(distribution name, version) a plugin was loaded from; ('', '') for plugins registered in code."""
    return _DISTRIBUTIONS.get(plugin_name, ("", ""))


def _load_entry_points(pm: pluggy.PluginManager, s: Settings) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=hookspecs.PROJECT):
        dist = getattr(ep.dist, "name", "?")
        if ep.name in s.disabled_plugins or pm.has_plugin(ep.name):
            continue
        if not s.plugins_autoload and dist != "sparkzoo":  # autoload off: only our own built-ins
            continue
        try:
            pm.register(ep.load(), name=ep.name)
            _DISTRIBUTIONS[ep.name] = (dist, getattr(ep.dist, "version", ""))
        except Exception as exc:  # a broken plugin must never break `import zoo`
            log.warning("skipping plugin %r from distribution %r: %s: %s", ep.name, dist, type(exc).__name__, exc)


def call_each(hook_name: str, settings: Settings) -> Iterator[tuple[str, Any]]:
    """(plugin name, result) of one hook for each plugin; a plugin that raises is logged and skipped."""
    pm = manager()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.plugin_name in settings.disabled_plugins:
            continue
        try:
            result = impl.function()
        except Exception as exc:
            dist = distribution(impl.plugin_name)[0] or "registered in code"
            log.warning("plugin %r (%s) failed in %s: %s: %s", impl.plugin_name, dist, hook_name, type(exc).__name__, exc)
            continue
        yield impl.plugin_name, result


def registered_models(settings: Settings) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(plugin name, entries) for each plugin implementing ``zoo_register_models``."""
    for name, docs in call_each("zoo_register_models", settings):
        yield name, list(docs or [])
