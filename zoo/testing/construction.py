"""The checks of how a stage is built: a docstring and examples (`meta`), a constructor without
arguments (`construct`), no shared mutable defaults (`defaults`), documented Params with accessors
and JSON values (`params`), copies that do not write through (`copy`)."""

from __future__ import annotations

import json

from zoo.testing.compare import ROW_POLICIES, _Fail, _row_policy, _same
from zoo.testing.kit import _spark_base


def check_meta(kit) -> None:
    if not (kit.cls.__doc__ or "").strip():
        raise _Fail("the class has no docstring")
    if not getattr(kit.cls, "zoo_name", ""):
        raise _Fail("the class has no zoo_name")
    if kit.jvm and not getattr(kit.cls, "zoo_jvm", False):
        raise _Fail(f"{kit.cls.__qualname__} extends Spark's JVM-backed {_spark_base(kit.cls)} without "
                    "zoo.stages.jvm.JvmStage: load() would look for a Scala class named after your module and "
                    f"fail; declare it as class {kit.cls.__name__}(JvmStage, {_spark_base(kit.cls)})")
    if not kit.examples:
        raise _Fail("zoo_examples(spark) returned no examples; the kit needs at least one realistic case")
    for i, example in enumerate(kit.examples):
        policy = _row_policy(example.stage)
        if policy not in ROW_POLICIES:
            raise _Fail(f"example {i}: zoo_rows is {policy!r}; declare one of {', '.join(ROW_POLICIES)}")


def check_construct(kit) -> None:
    try:
        kit.cls()
    except Exception as exc:
        raise _Fail(f"{kit.cls.__qualname__}() fails: {type(exc).__name__}: {exc}") from None


def check_defaults(kit) -> None:
    a, b = kit.cls(), kit.cls()
    for p in a.params:
        if not a.isDefined(p):
            continue
        value = a.getOrDefault(p)
        if isinstance(value, (list, dict, set, bytearray)) and value is b.getOrDefault(b.getParam(p.name)):
            raise _Fail(
                f"param {p.name!r}: two fresh instances share one {type(value).__name__} object as its value, so "
                "changing it in one stage changes every stage; build a new one in __init__ (e.g. "
                f"kit._setDefault({p.name}=[])) instead of a class-level or module-level object"
            )
    for name, value in vars(a).items():
        if isinstance(value, (list, dict, set, bytearray)) and value and value is vars(b).get(name):
            raise _Fail(f"attribute {name!r} is one {type(value).__name__} object shared by every instance")


def check_params(kit) -> None:
    for example in kit.examples:
        stage = example.stage
        for p in stage.params:
            if not (p.doc or "").strip():
                raise _Fail(f"param {p.name!r} has no doc")
            if getattr(type(stage), p.name, None) is None or getattr(stage, p.name).name != p.name:
                raise _Fail(f"param {p.name!r} is not the class attribute of the same name")
            if stage.isDefined(p):
                value = stage.getOrDefault(p)
                try:
                    json.dumps(value)
                except TypeError:
                    raise _Fail(f"param {p.name!r} value {value!r} is not JSON-serialisable") from None
                setter = getattr(stage, f"set{p.name[0].upper()}{p.name[1:]}", None)
                getter = getattr(stage, f"get{p.name[0].upper()}{p.name[1:]}", None)
                if setter is None or getter is None:
                    raise _Fail(f"param {p.name!r} lacks set{p.name[0].upper()}{p.name[1:]}/get... methods")
                copy = stage.copy()
                getattr(copy, setter.__name__)(value)
                if not _same(getattr(copy, getter.__name__)(), value):
                    raise _Fail(f"param {p.name!r}: the getter does not return what the setter set")


def check_copy(kit) -> None:
    stage = kit.examples[0].stage
    before = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
    copy = stage.copy()
    for p in copy.params:
        if copy.isDefined(p) and isinstance(copy.getOrDefault(p), list):
            copy._set(**{p.name: []})
    after = {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}
    if not _same(before, after):
        raise _Fail(f"changing a copy changed the original: {before} -> {after}")
