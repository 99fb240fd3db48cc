"""The stage registry: every class plugins return from ``zoo_register_stages``, by short name.

One broken plugin never breaks the others: a plugin that cannot be imported, a hook that raises
or returns something other than a list of stage classes, a duplicate stage name, a class that
cannot be built without arguments or whose params cannot be described is logged (with the
distribution and the reason) and kept as a *broken* entry: ``zoo stages`` lists it as broken,
``zoo check NAME`` reports it as a conformance failure, ``zoo.stage(NAME)`` explains it, and every
other stage works."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from zoo.config import settings as current_settings
from zoo.errors import StageError
from zoo.log import get_logger
from zoo.plugins import manager
from zoo.plugins.jvm import is_jvm_backed

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
    broken: str = ""  # why the stage cannot be used; '' when it works

    @property
    def class_path(self) -> str:
        if self.cls is None:
            return ""
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cls"] = self.class_path
        return out


def _describe_params(cls: type) -> tuple[dict[str, Any], ...]:
    if _needs_a_spark_context(cls):
        return _class_params(cls)
    try:
        instance = cls()
    except Exception as exc:
        raise StageError(f"stage class {cls.__qualname__} cannot be built without arguments: "
                         f"{type(exc).__name__}: {exc}") from None
    out = []
    try:
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
    except Exception as exc:
        raise StageError(f"the params of stage class {cls.__qualname__} cannot be described: "
                         f"{type(exc).__name__}: {exc}") from None
    return tuple(out)


def _needs_a_spark_context(cls: type) -> bool:
    """A JVM-backed stage (zoo.stages.jvm) is built through py4j, so only while a SparkContext is up."""
    from pyspark import SparkContext

    return is_jvm_backed(cls) and SparkContext._active_spark_context is None


def _class_params(cls: type) -> tuple[dict[str, Any], ...]:
    """The Params a class declares, without building it: their defaults are the JVM's, set at construction."""
    from pyspark.ml.param import Param

    found = {p.name: p for p in (getattr(cls, a, None) for a in dir(cls)) if isinstance(p, Param)}
    return tuple({"name": name, "type": _CONVERTER_TYPES.get(getattr(p.typeConverter, "__name__", "identity"), "any"),
                  "default": None, "doc": p.doc} for name, p in sorted(found.items()))


def registered(*, include_broken: bool = False) -> dict[str, StageInfo]:
    """Short name -> StageInfo, for every stage every loaded plugin registers (``include_broken``:
    also the entries that could not be used, each with its reason in ``broken``)."""
    settings = current_settings()
    found: dict[str, StageInfo] = {}
    broken: dict[str, StageInfo] = {}

    def mark(name: str, plugin: str, cls: type | None, reason: str) -> None:
        dist, version = manager.distribution(plugin)
        log.warning("stage %r is broken: %s", name, reason)
        broken[name] = StageInfo(name, cls, plugin, dist, version, "", (), reason)

    for plugin, reason in manager.load_failures().items():
        mark(plugin, plugin, None, reason)
    outcomes = sorted(manager.call_each_outcome("zoo_register_stages", settings),
                      key=lambda o: (manager.distribution(o[0])[0] != "sparkzoo", o[0]))
    for plugin, classes, failure in outcomes:  # sparkzoo's own stages first: a plugin cannot take their names
        dist, version = manager.distribution(plugin)
        if failure:
            mark(plugin, plugin, None, failure)
            continue
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, type) for c in classes):
            mark(plugin, plugin, None, f"plugin {plugin!r} ({dist or 'registered in code'}): zoo_register_stages "
                 f"returned {type(classes).__name__} {classes!r:.80}; it must return a list of stage classes")
            continue
        for cls in classes:
            name = getattr(cls, "zoo_name", "")
            if not name:
                mark(f"{plugin}:{cls.__qualname__}", plugin, cls, f"{cls.__qualname__} has no zoo_name")
                continue
            if name in found:
                mark(f"{plugin}:{name}", plugin, cls,
                     f"stage name {name!r} of {cls.__qualname__} (plugin {plugin!r}) is already taken by "
                     f"{found[name].class_path} (plugin {found[name].plugin!r})")
                continue
            doc = (cls.__doc__ or "").strip().splitlines()
            try:
                params = _describe_params(cls)
            except StageError as exc:
                mark(name, plugin, cls, f"{exc} (plugin {plugin!r}, {dist or 'registered in code'})")
                continue
            found[name] = StageInfo(name, cls, plugin, dist, version, doc[0] if doc else "", params)
    if include_broken:
        found.update({k: v for k, v in broken.items() if k not in found})
    return found


def stages() -> list[StageInfo]:
    """Every registered stage, sorted by name; broken ones included (``broken`` says why)."""
    return sorted(registered(include_broken=True).values(), key=lambda s: s.name)


def canonical_name(name: str, found: dict[str, StageInfo]) -> str:
    """``name``, or the current name of the stage that was called ``name`` before (its class lists the
    old name in ``zoo_former_names``), with a warning: a renamed stage keeps working in old code."""
    if name in found:
        return name
    for info in found.values():
        if name in getattr(info.cls, "zoo_former_names", ()):
            import warnings

            warnings.warn(f"stage {name!r} is now called {info.name!r}; use the new name", DeprecationWarning,
                          stacklevel=3)
            return info.name
    return name


def stage(name: str, **params: Any):
    """Build the stage registered as ``name`` with the given params, e.g. ``zoo.stage("sql", statement=...)``."""
    found = registered(include_broken=True)
    name = canonical_name(name, found)
    if name in found and found[name].broken:
        raise StageError(f"stage {name!r} cannot be used: {found[name].broken}")
    if name not in found:
        import difflib

        close = difflib.get_close_matches(name, list(found), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise StageError(f"unknown stage {name!r}.{hint} `zoo stages` lists the registered stages.")
    cls = found[name].cls
    if _needs_a_spark_context(cls):
        raise StageError(f"stage {name!r} ({cls.__qualname__}) is one of Spark's JVM-backed stages, which the JVM "
                         "builds: start a SparkSession first (SparkSession.builder.getOrCreate())")
    try:
        return cls(**params)
    except TypeError as exc:
        known = ", ".join(p["name"] for p in found[name].params)
        raise StageError(f"stage {name!r}: {exc}. Its params: {known}") from None
