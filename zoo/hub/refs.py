"""Model references: the one place that decides what a string naming a model means.

Everywhere a user names a model (``zoo.pull``, ``zoo.cuts``, ``modelName`` of a stage,
``zoo featurize --model``), the text is one of:

- a **sha256**: ``sha256:<64 hex>`` or the 64 hex digits alone;
- a **file path**: ends with ``.onnx``, contains a path separator, starts with ``~``, or is a
  ``file:`` URL (registry names can contain none of these, so nothing is ambiguous);
- otherwise a **name** or alias that the registries resolve.

:func:`parse` only reads the text; :mod:`zoo.hub.resolver` turns a reference into bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SHA256_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")

RefKind = Literal["sha256", "path", "name"]


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: ``kind`` says how to read ``value`` (a hex sha256, an expanded file
    path, or a registry name); ``text`` is what the user wrote, for messages."""

    text: str
    kind: RefKind
    value: str

    @property
    def path(self) -> Path:
        """The file of a ``path`` reference."""
        return Path(self.value)

    def __str__(self) -> str:
        return self.text


def parse(text: str | os.PathLike[str]) -> ModelRef:
    """Read a model reference (see the module documentation for the rules)."""
    text = os.fspath(text)
    match = SHA256_RE.match(text)
    if match:
        return ModelRef(text, "sha256", match.group(1))
    if text.startswith("file:"):
        from urllib.parse import urlsplit
        from urllib.request import url2pathname

        return ModelRef(text, "path", url2pathname(urlsplit(text).path))
    if text.endswith(".onnx") or "/" in text or os.sep in text or text.startswith("~"):
        return ModelRef(text, "path", str(Path(text).expanduser()))
    return ModelRef(text, "name", text)
