"""Persistence for fitted models that hold a fitted Spark model inside (IDF weights, a PipelineModel).

The params are written as SparkML's JSON metadata, as for every stage; the inner model, too big
for a param, is written with its own writer into a sub-folder of the stage's folder, so it works
on every file system Spark writes to and loads with Spark's own reader.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter


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
