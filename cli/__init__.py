"""The ``zoo`` command line (installed as ``zoo.cli``)."""
