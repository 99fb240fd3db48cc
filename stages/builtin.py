"""sparkzoo's own stages, registered through the ``zoo`` entry point: the same path third parties use."""

from __future__ import annotations

from zoo.plugins.hookspecs import hookimpl


@hookimpl
def zoo_register_stages():
    from zoo.stages.columns import Drop, Rename, Select
    from zoo.stages.detection_crops import DetectionCrops
    from zoo.stages.group_average import GroupAverage
    from zoo.stages.image_augmenter import ImageAugmenter
    from zoo.stages.image_classifier import ImageClassifier
    from zoo.stages.image_featurizer import ImageFeaturizer
    from zoo.stages.image_transformer import ImageTransformer
    from zoo.stages.object_detector import ObjectDetector
    from zoo.stages.onnx_model import ONNXModel
    from zoo.stages.partitioning import Cache, Repartition
    from zoo.stages.sql import SQL
    from zoo.stages.tabular_featurizer import TabularFeaturizer
    from zoo.stages.text_embedder import TextEmbedder
    from zoo.stages.text_featurizer import TextFeaturizer
    from zoo.stages.vector_assembler import VectorAssembler

    return [SQL, Repartition, Cache, Select, Drop, Rename, VectorAssembler, ImageFeaturizer, ImageAugmenter,
            GroupAverage, ONNXModel, ImageTransformer, TextFeaturizer, TabularFeaturizer, TextEmbedder, ImageClassifier,
            ObjectDetector, DetectionCrops]
