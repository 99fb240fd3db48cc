"""An example sparkzoo plugin: the ``text_normalize`` stage.

The stage class loads on first use (PEP 562): sparkzoo imports this package whenever it loads
plugins, e.g. for `zoo pull`, and importing the stage pulls in pyspark.ml (about half a second).
Keep a plugin's package and entry-point module this light.
"""

from __future__ import annotations

__all__ = ["TextNormalize"]


def __getattr__(name: str):
    if name == "TextNormalize":
        from zoo_plugin_example.text_normalize import TextNormalize

        return TextNormalize
    raise AttributeError(f"module 'zoo_plugin_example' has no attribute {name!r}")
