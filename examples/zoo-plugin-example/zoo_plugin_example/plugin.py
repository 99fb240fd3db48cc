"""The entry point module: tells sparkzoo which stages this package provides."""

import zoo


@zoo.hookimpl
def zoo_register_stages():
    from zoo_plugin_example.text_normalize import TextNormalize

    return [TextNormalize]
