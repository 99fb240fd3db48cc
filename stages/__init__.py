"""Built-in SparkML stages of sparkzoo (installed as ``zoo.stages``).

They are registered through the same ``zoo`` entry point third-party plugins use; the stages
themselves arrive with the plugin-system and featurization work.
"""
