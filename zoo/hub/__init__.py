"""The hub: from a model reference to a verified ONNX file on this node's disk.

The pull path (``zoo.pull("resnet50")``)::

    "resnet50" ─> refs.parse ─> resolver ─> registry (built-in, plugins, ZOO_REGISTRY, user)
                                      └──> download ─> sources (mirrors, https, hf://, file://, fsspec, plugins)
                                                 └──> cache: DownloadSlot ─> sha256 verified ─> blobs/sha256/<hex>

Modules: :mod:`~zoo.hub.refs` (what a model reference means), :mod:`~zoo.hub.resolver` (the one
place it is resolved), :mod:`~zoo.hub.registry`, :mod:`~zoo.hub.presets`, :mod:`~zoo.hub.sources`,
:mod:`~zoo.hub.download`, :mod:`~zoo.hub.cache` (the layout under ``ZOO_HOME``; the one place a cache
is built is :func:`~zoo.hub.cache.model_cache`), :mod:`~zoo.hub.locks`, :mod:`~zoo.hub.fsutil`,
:mod:`~zoo.hub.onnx_files` (what sparkzoo reads from an ONNX file, and the external-data check),
:mod:`~zoo.hub.layer_cuts` (layer cuts: derived model files, cached like downloads),
:mod:`~zoo.hub.mirror` and :mod:`~zoo.hub.api` (the public functions listed below).

Nothing here knows about Spark or ONNX Runtime sessions; executors reach the hub through
:mod:`zoo.runtime.models`. Names load on first use (:mod:`zoo.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.lazy import exports

_WHERE = {
    **dict.fromkeys(["VerifyResult", "add", "cache_dir", "cache_size", "cut", "cuts", "info", "models", "prune_cache",
                     "pull", "remove", "verify"], "zoo.hub.api"),
    "Cut": "zoo.hub.layer_cuts",
    "export_mirror": "zoo.hub.mirror",
    "ModelRef": "zoo.hub.refs", "parse": "zoo.hub.refs",
    "ModelEntry": "zoo.hub.registry",
    "LocatedModel": "zoo.hub.resolver", "locate": "zoo.hub.resolver", "pin": "zoo.hub.resolver",
}
__all__ = ["Cut", "LocatedModel", "ModelEntry", "ModelRef", "VerifyResult", "add", "cache_dir", "cache_size", "cut",
           "cuts", "export_mirror", "info", "locate", "models", "parse", "pin", "prune_cache", "pull", "remove", "verify"]
__getattr__, __dir__ = exports(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and IDEs see
    from zoo.hub.api import (
        VerifyResult,
        add,
        cache_dir,
        cache_size,
        cut,
        cuts,
        info,
        models,
        prune_cache,
        pull,
        remove,
        verify,
    )
    from zoo.hub.layer_cuts import Cut
    from zoo.hub.mirror import export_mirror
    from zoo.hub.refs import ModelRef, parse
    from zoo.hub.registry import ModelEntry
    from zoo.hub.resolver import LocatedModel, locate, pin
