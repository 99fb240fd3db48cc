"""What runs on Spark's Python workers for sparkzoo's stages: the bodies of ``mapInArrow`` and the
small picklable jobs the stages build for them on the driver.

- :mod:`~zoo.stages.workers.image_input`: one image column (bytes, image struct or path), read the
  same way by every image stage;
- :mod:`~zoo.stages.workers.images`: ``image_featurizer``, ``image_transformer`` and
  ``image_augmenter``;
- :mod:`~zoo.stages.workers.detections`: ``object_detector`` and ``detection_crops``;
- :mod:`~zoo.stages.workers.tensors`: ``onnx_model``;
- :mod:`~zoo.stages.workers.text`: ``text_embedder``.

A worker unpickles these functions by reference, so these modules import nothing of ``pyspark.ml``
(which imports pandas, ~50 MB per worker): only :mod:`zoo.runtime`, numpy and pyarrow
(tests/test_worker_imports.py holds them to it).
"""
