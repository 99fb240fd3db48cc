"""Named preprocessing recipes, as published by the models' authors."""

from __future__ import annotations

import copy
from typing import Any

from zoo.errors import ConfigError

IMAGENET: dict[str, Any] = {
    "color_order": "RGB",
    "resize": {"mode": "shorter_side", "size": 256, "interpolation": "bilinear"},
    "crop": {"mode": "center", "size": [224, 224]},
    "scale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

# EfficientNet-Lite: same geometry (the zoo's reference code resizes by 224/0.875), (x - 127) / 128.
EFFICIENTNET_LITE: dict[str, Any] = {
    "color_order": "RGB",
    "resize": {"mode": "shorter_side", "size": 256, "interpolation": "bilinear"},
    "crop": {"mode": "center", "size": [224, 224]},
    "scale": 1.0,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
}

PRESETS: dict[str, dict[str, Any] | None] = {
    "imagenet": IMAGENET,
    "efficientnet-lite": EFFICIENTNET_LITE,
    "none": None,
}


def preset(name_or_spec: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a named preset, or the given dict unchanged (validated later by the schema)."""
    if name_or_spec is None or isinstance(name_or_spec, dict):
        return name_or_spec
    try:
        return copy.deepcopy(PRESETS[name_or_spec])
    except KeyError:
        raise ConfigError(f"unknown preprocess preset {name_or_spec!r}; choose one of {', '.join(PRESETS)}") from None
