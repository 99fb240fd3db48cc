"""Packages whose public names load on first use (PEP 562).

Spark's Python workers import sparkzoo to run a stage's executor code, and the CLI answers
``zoo pull`` in a tenth of a second: neither should pay for modules it never uses (pyspark.ml
imports pandas, ~50 MB per worker; the cut analysis imports numpy). A package lists where each
public name lives; the module is imported when the name is first read.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps each public name to the module that
    defines it, or to the subpackage of that name (the value is kept in the package once read)."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module protocol's name
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(where[name])
        value = module if where[name] == f"{package}.{name}" else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
