"""Param declarations shared by several stages (beyond pyspark.ml.param.shared)."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters


def to_str_dict(value: Any) -> dict[str, str]:
    """TypeConverter for {str: str} params (JSON-serialisable, so they persist)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"expected a dict of column names to column names, got {value!r}")
    return dict(value)


def param(name: str, doc: str, converter=TypeConverters.identity) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter)
