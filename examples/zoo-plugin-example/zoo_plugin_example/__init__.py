"""An example sparkzoo plugin: the ``text_normalize`` stage."""

from zoo_plugin_example.text_normalize import TextNormalize

__all__ = ["TextNormalize"]
