"""Where sparkzoo 0.2 kept the tabular featurizer (then the ``featurize`` stage, class ``Featurize``):
pipelines saved by 0.2 name these classes, and loading them must keep working. New code uses
:mod:`zoo.stages.tabular_featurizer`."""

from zoo.stages.tabular_featurizer import TabularFeaturizer as Featurize
from zoo.stages.tabular_featurizer import TabularFeaturizerModel as FeaturizeModel

__all__ = ["Featurize", "FeaturizeModel"]
