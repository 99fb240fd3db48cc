"""How stages that hold more than JSON params are saved and loaded, on every file system Spark writes to.

- :class:`HasEmbeddedModel` (:class:`EmbeddingWriter` / :class:`EmbeddingReader`): a model stage
  (image_featurizer, onnx_model, text_embedder) saved with its model inside
  (``embedModel=True``), for fully self-contained pipelines. The (cut) model's bytes, and the files
  other params name (text_embedder's tokenizer), are written next to the stage's metadata as a
  one-row parquet file, each pinned by sha256; loading puts them into the local zoo cache and
  points the stage at them, with the preprocessing it had when saved, and switches ``shipModel`` on
  so executors on other nodes receive the model too.
- :class:`HasInnerModel`: fitted models that hold a fitted Spark model (IDF weights, a
  PipelineModel), written with its own writer into a sub-folder of the stage's folder and loaded
  with Spark's own reader.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pyspark.ml.param import Params
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter

from zoo.stages.params import param

_DIR = "zoo_model"


class HasEmbeddedModel(Params):
    """``embedModel``: a model stage (:class:`zoo.stages.params.HasModel`) saved with its (cut) model's
    bytes inside, so the saved pipeline loads and runs where no zoo source, cache or file has it."""

    embedModel = param("save the (cut) model's bytes with the stage, so a saved pipeline needs no zoo source to load",
                       bool)

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(embedModel=False)

    def _embedded_preprocess(self) -> Any:
        """The preprocessing resolved into the saved spec (None: the stage has none)."""
        return None

    def _embedded_files(self) -> dict[str, bytes]:
        """Param name -> the bytes of the file it names, saved with the model (e.g. a tokenizer)."""
        return {}

    def _embedded_params(self) -> dict[str, Any]:
        """Params whose value was resolved from the registry when saved (the registry may not know the
        embedded model where it is loaded)."""
        return {}

    def write(self):
        return EmbeddingWriter(self)

    @classmethod
    def read(cls):
        return EmbeddingReader(cls)


class EmbeddingWriter(DefaultParamsWriter):
    """Writes a model stage's params, and with ``embedModel`` its (cut) model's bytes."""

    def saveImpl(self, path: str) -> None:
        super().saveImpl(path)
        stage = self.instance
        if not stage.getEmbedModel():
            return
        from zoo.runtime.models import obtain

        spec = stage._model_spec(self.sparkSession, preprocess=stage._embedded_preprocess())
        if spec.parts:
            from zoo.errors import ConfigError

            size = sum(p.bytes or 0 for p in spec.parts)
            raise ConfigError(
                f"model {spec.label!r} keeps its weights in {len(spec.parts)} external data files ({size:,} bytes), "
                "and embedModel saves a model as one parquet value; save the stage with embedModel=False (it "
                "pins the model's sha256, and loading fetches every file through the zoo)"
            )
        runnable = obtain(spec)
        data = runnable if isinstance(runnable, bytes) else runnable.read_bytes()
        files = stage._embedded_files()
        record = {"sha256": spec.sha256, "preprocess": spec.preprocess, "source_sha256": spec.source_sha256,
                  "cut": spec.cut.index if spec.cut else 0,
                  "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
                  "params": stage._embedded_params()}
        df = self.sparkSession.createDataFrame(
            [(json.dumps(record), bytearray(data), {name: bytearray(blob) for name, blob in files.items()})],
            "spec string, model binary, files map<string, binary>")
        df.coalesce(1).write.mode("overwrite").parquet(f"{path.rstrip('/')}/{_DIR}")


class EmbeddingReader(DefaultParamsReader):
    """Loads a model stage; an embedded model goes into the local zoo cache, pinned by sha256."""

    def load(self, path: str):
        stage = super().load(path)
        if not stage.getEmbedModel():
            return stage
        from zoo.errors import ChecksumError
        from zoo.hub.cache import model_cache

        row = self.sparkSession.read.parquet(f"{path.rstrip('/')}/{_DIR}").first()
        record, data = json.loads(row["spec"]), bytes(row["model"])
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ChecksumError(f"the model embedded in {path} does not match its recorded sha256 {record['sha256']}")
        files = {name: bytes(blob) for name, blob in (row.asDict().get("files") or {}).items()}
        for name, sha in record.get("files", {}).items():
            if name not in files or hashlib.sha256(files[name]).hexdigest() != sha:
                raise ChecksumError(f"the {name} file embedded in {path} is missing or does not match its recorded "
                                    f"sha256 {sha}")
            stage._set(**{name: str(model_cache().import_bytes(files[name])[1])})
        model_cache().import_bytes(data)
        stage._set(**record.get("params", {}))
        stage._set(modelName=f"sha256:{record['sha256']}", cut=0, modelSha256=record["sha256"], shipModel=True)
        if stage.hasParam("preprocess"):
            stage._set(preprocess=json.dumps(record["preprocess"]) if record["preprocess"] else "none")
        return stage


class HasInnerModel:
    """Mixin: ``self._inner`` (or None) saved in ``_inner_dir`` and loaded with :meth:`_inner_class`."""

    _inner: Any = None
    _inner_dir: str = "inner"

    @classmethod
    def _inner_class(cls) -> type:
        raise NotImplementedError

    def _expects_inner(self) -> bool:
        """Whether a saved model of these params has an inner model to load."""
        return True

    def write(self):
        return _InnerModelWriter(self)

    @classmethod
    def read(cls):
        return _InnerModelReader(cls)


class _InnerModelWriter(DefaultParamsWriter):
    def saveImpl(self, path: str) -> None:
        super().saveImpl(path)
        if self.instance._inner is not None:
            self.instance._inner.write().overwrite().save(f"{path.rstrip('/')}/{self.instance._inner_dir}")


class _InnerModelReader(DefaultParamsReader):
    def load(self, path: str):
        model = super().load(path)
        if model._expects_inner():
            model._inner = model._inner_class().load(f"{path.rstrip('/')}/{model._inner_dir}")
        return model
