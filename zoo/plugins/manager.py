"""The plugin manager: loads ``zoo`` entry points, isolating broken plugins.

``ZOO_DISABLE_PLUGINS`` and ``ZOO_PLUGINS_AUTOLOAD`` are read when an operation starts, like all
configuration: one manager per distinct setting, each loading entry points once. A plugin that
cannot be imported is logged with its distribution and reason and remembered in
:func:`load_failures`, so ``zoo stages`` and ``zoo check`` can show it; it never stops the others.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import pluggy

from zoo.config import Settings
from zoo.log import get_logger
from zoo.plugins import hookspecs

log = get_logger("plugins")


def manager() -> pluggy.PluginManager:
    """The plugin manager for the current ``ZOO_DISABLE_PLUGINS``/``ZOO_PLUGINS_AUTOLOAD`` (entry
    points are loaded on first use, not at import)."""
    from zoo.config import settings

    s = settings()
    return _manager(s.disabled_plugins, s.plugins_autoload)


@functools.lru_cache(maxsize=8)
def _manager(disabled: frozenset[str], autoload: bool) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    _load_entry_points(pm, disabled, autoload)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # an implementation of a hook sparkzoo does not have
        log.warning("plugin %r implements an unknown hook: %s", exc.plugin_name, exc)
    return pm


_DISTRIBUTIONS: dict[str, tuple[str, str]] = {}
_LOAD_FAILURES: dict[tuple[frozenset[str], bool], dict[str, str]] = {}


def load_failures() -> dict[str, str]:
    """Plugin (entry point) name -> why it could not be loaded, for the current settings."""
    from zoo.config import settings

    s = settings()
    _manager(s.disabled_plugins, s.plugins_autoload)
    return dict(_LOAD_FAILURES.get((s.disabled_plugins, s.plugins_autoload), {}))


def distribution(plugin_name: str) -> tuple[str, str]:
    """(distribution name, version) a plugin was loaded from; ('', '') for plugins registered in code."""
    return _DISTRIBUTIONS.get(plugin_name, ("", ""))


def _load_entry_points(pm: pluggy.PluginManager, disabled: frozenset[str], autoload: bool) -> None:
    from importlib.metadata import entry_points

    failures = _LOAD_FAILURES.setdefault((disabled, autoload), {})
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = getattr(ep.dist, "name", "?")
        if ep.name in disabled or pm.has_plugin(ep.name):
            continue
        if not autoload and dist != "sparkzoo":  # autoload off: only our own built-ins
            continue
        _DISTRIBUTIONS[ep.name] = (dist, getattr(ep.dist, "version", ""))
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must never break `import zoo` or the other plugins
            failures[ep.name] = f"plugin {ep.name!r} of distribution {dist!r} failed to load: {type(exc).__name__}: {exc}"
            log.warning("skipping %s", failures[ep.name])


def call_each_outcome(hook_name: str, settings: Settings) -> Iterator[tuple[str, Any, str]]:
    """(plugin name, result, why it failed or '') of one hook for each plugin; a raising plugin is logged."""
    pm = _manager(settings.disabled_plugins, settings.plugins_autoload)
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.plugin_name in settings.disabled_plugins:
            continue
        try:
            result = impl.function()
        except Exception as exc:
            dist = distribution(impl.plugin_name)[0] or "registered in code"
            reason = f"plugin {impl.plugin_name!r} ({dist}) failed in {hook_name}: {type(exc).__name__}: {exc}"
            log.warning("%s", reason)
            yield impl.plugin_name, None, reason
            continue
        yield impl.plugin_name, result, ""


def call_each(hook_name: str, settings: Settings) -> Iterator[tuple[str, Any]]:
    """(plugin name, result) of one hook for each plugin; a plugin that raises is logged and skipped."""
    for plugin, result, failure in call_each_outcome(hook_name, settings):
        if not failure:
            yield plugin, result


def registered_models(settings: Settings) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(plugin name, entries) for each plugin implementing ``zoo_register_models``."""
    for name, docs in call_each("zoo_register_models", settings):
        yield name, list(docs or [])
