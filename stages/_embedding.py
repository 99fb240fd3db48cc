"""Saving a featurizer with its model inside (``embedModel=True``), for fully self-contained pipelines.

The (cut) model's bytes are written next to the stage's metadata as a one-row parquet file, so
this works on every file system Spark writes to (local, HDFS, S3, ABFS...). Loading puts the
bytes into the local zoo cache and points the stage at them by sha256, with the preprocessing it
had when saved; ``shipModel`` is switched on so executors on other nodes receive the file too.
"""

from __future__ import annotations

import json

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter

_DIR = "zoo_model"


class EmbeddingWriter(DefaultParamsWriter):
    def saveImpl(self, path: str) -> None:
        super().saveImpl(path)
        stage = self.instance
        if not stage.getEmbedModel():
            return
        from zoo import _modelref

        spec = stage._model_spec(self.sparkSession, preprocess=stage._preprocess_value())
        runnable = _modelref.fetch(spec)
        data = runnable if isinstance(runnable, bytes) else runnable.read_bytes()
        record = {"sha256": spec.sha256, "preprocess": spec.preprocess, "source_sha256": spec.source_sha256,
                  "cut": spec.cut.index if spec.cut else 0}
        df = self.sparkSession.createDataFrame([(json.dumps(record), bytearray(data))], "spec string, model binary")
        df.coalesce(1).write.mode("overwrite").parquet(f"{path.rstrip('/')}/{_DIR}")


class EmbeddingReader(DefaultParamsReader):
    def load(self, path: str):
        stage = super().load(path)
        if not stage.getEmbedModel():
            return stage
        import hashlib

        from zoo.cache import Cache
        from zoo.config import settings
        from zoo.errors import ChecksumError

        row = self.sparkSession.read.parquet(f"{path.rstrip('/')}/{_DIR}").first()
        record, data = json.loads(row["spec"]), bytes(row["model"])
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ChecksumError(f"the model embedded in {path} does not match its recorded sha256 {record['sha256']}")
        Cache(settings().home).import_bytes(data)
        stage._set(modelName=f"sha256:{record['sha256']}", cut=0, modelSha256=record["sha256"], shipModel=True,
                   preprocess=json.dumps(record["preprocess"]) if record["preprocess"] else "none")
        return stage
