"""The stage registry: every class plugins return from ``zoo_register_stages``, by short name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zoo import _plugins
from zoo._logging import get_logger
from zoo.config import settings as current_settings
from zoo.errors import StageError

log = get_logger("stages")

_CONVERTER_TYPES = {
    "toString": "str", "toInt": "int", "toFloat": "float", "toBoolean": "bool", "toList": "list",
    "toListString": "list[str]", "toListInt": "list[int]", "toListFloat": "list[float]", "to_str_dict": "dict[str, str]",
    "toVector": "vector", "toMatrix": "matrix", "identity": "any",
}


@dataclass(frozen=True)
class StageInfo:
    """What ``zoo stages`` prints about one registered stage."""

    name: str
    cls: type
    plugin: str
    distribution: str
    version: str
    doc: str
    params: tuple[dict[str, Any], ...]

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cls"] = self.class_path
        return out


def _describe_params(cls: type) -> tuple[dict[str, Any], ...]:
    try:
        instance = cls()
    except Exception as exc:
        raise StageError(f"stage class {cls.__qualname__} cannot be built without arguments: {exc}") from None
    out = []
    for p in sorted(instance.params, key=lambda p: p.name):
        converter = getattr(p.typeConverter, "__name__", "identity")
        out.append(
            {
                "name": p.name,
                "type": _CONVERTER_TYPES.get(converter, converter),
                "default": instance.getOrDefault(p) if instance.hasDefault(p) else None,
                "doc": p.doc,
            }
        )
    return tuple(out)


def registered() -> dict[str, StageInfo]:
    """Short name -> StageInfo, for every stage every loaded plugin registers."""
    found: dict[str, StageInfo] = {}
    for plugin, classes in _plugins.call_each("zoo_register_stages", current_settings()):
        dist, version = _plugins.distribution(plugin)
        for cls in classes or []:
            name = getattr(cls, "zoo_name", "")
            if not name:
                log.warning("plugin %r registers %s without a zoo_name; skipped", plugin, cls.__qualname__)
                continue
            if name in found:
                log.warning(
                    "stage name %r of %s (plugin %r) is already taken by %s (plugin %r); skipped",
                    name, cls.__qualname__, plugin, found[name].class_path, found[name].plugin,
                )
                continue
            doc = (cls.__doc__ or "").strip().splitlines()
            found[name] = StageInfo(name, cls, plugin, dist, version, doc[0] if doc else "", _describe_params(cls))
    return found


def stages() -> list[StageInfo]:
    """Every registered stage, sorted by name."""
    return sorted(registered().values(), key=lambda s: s.name)


def stage(name: str, **params: Any):
    """Build the stage registered as ``name`` with the given params, e.g. ``zoo.stage("sql", statement=...)``."""
    found = registered()
    if name not in found:
        import difflib

        close = difflib.get_close_matches(name, list(found), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise StageError(f"unknown stage {name!r}.{hint} `zoo stages` lists the registered stages.")
    cls = found[name].cls
    try:
        return cls(**params)
    except TypeError as exc:
        known = ", ".join(p["name"] for p in found[name].params)
        raise StageError(f"stage {name!r}: {exc}. Its params: {known}") from None
