"""The runtime: what runs a model, on the driver and on Spark's executors.

The featurize path (``zoo.pipeline("resnet50", cut=1)`` transformed)::

    DataFrame ─> stage (zoo.stages.image_featurizer: Params, schema, models.prepare on the driver)
              ─> mapInArrow ─> worker body (zoo.stages.workers.images)
                                 ├─> imaging: decode + preprocess into one reused batch buffer
                                 ├─> models.obtain: node cache / shipped file / download, cut rebuilt
                                 └─> sessions: one ONNX Runtime session per worker ─> arrow: features out

Modules: :mod:`~zoo.runtime.models` (the :class:`~zoo.runtime.models.ModelSpec` a stage ships, prepared
on the driver and obtained on executors), :mod:`~zoo.runtime.sessions` (devices, threads, batch sizes,
the per-worker session cache, which loads the node's optimised files: :mod:`zoo.hub.optimized`), :mod:`~zoo.runtime.imaging` (OpenCV decoding and preprocessing),
:mod:`~zoo.runtime.arrow` (Arrow arrays from buffers, no pandas) and
:mod:`~zoo.runtime.jvm_functions` (sparkzoo's Spark SQL functions from a shipped jar).

Executors import these modules without ``pyspark.ml`` (which imports pandas): keep it so
(tests/test_worker_imports.py).
"""
