"""The checks of a stage that travels: saved and loaded alone, fitted, and inside a Pipeline and a
PipelineModel, with SparkML's writer contract (`persistence`); through cloudpickle (`pickle`)."""

from __future__ import annotations

import os
import shutil
import tempfile

from zoo.plugins.jvm import defaults_from_the_jvm, is_jvm_backed
from zoo.testing.compare import _Fail, _fit_df, _row_diff, _same, rows
from zoo.testing.kit import _lost_attributes, _stage_pairs


def _roundtrip(kit, obj, kind: str, compare_df, loader, *, writer_protocol: bool = False,
               reference: list | None = None) -> None:
    """save, load, compare ``compare_df(loaded)`` with ``reference`` (default ``compare_df(obj)``).
    ``writer_protocol``: also check that a second save() fails and overwrite() works
    (SparkML's writer contract; each is a Spark job, so once per stage)."""
    path = tempfile.mkdtemp(prefix="zoo-kit-")
    try:
        target = os.path.join(path, "stage")
        obj.save(target)
        if writer_protocol:
            try:
                obj.save(target)
            except Exception:
                pass
            else:
                raise _Fail(f"{kind}: a second save() to an existing path did not fail")
            obj.write().overwrite().save(target)
        loaded = loader(target)
        for stage in _stage_pairs(loaded, loaded):
            if is_jvm_backed(stage[0]):  # compare what the JVM, which does the work, will use
                defaults_from_the_jvm(stage[0])
        if getattr(loaded, "uid", None) != obj.uid:
            raise _Fail(f"{kind}: load() changed the uid from {obj.uid} to {loaded.uid}")
        for a, b in _stage_pairs(obj, loaded):
            for p in a.params:
                lp = b.getParam(p.name)
                if a.isSet(p) != b.isSet(lp):
                    raise _Fail(f"{kind}: param {p.name!r} set={a.isSet(p)} before save, set={b.isSet(lp)} after load")
                if a.isDefined(p) and not _same(a.getOrDefault(p), b.getOrDefault(lp)):
                    raise _Fail(f"{kind}: param {p.name!r} was {a.getOrDefault(p)!r}, loaded {b.getOrDefault(lp)!r}")
        if compare_df is not None:
            before = reference if reference is not None else rows(compare_df(obj))
            after = rows(compare_df(loaded))
            if before != after:
                lost = [name for a, b in _stage_pairs(obj, loaded) for name in _lost_attributes(a, b)]
                hint = (f"; attribute(s) {', '.join(map(repr, lost))} set on the instance are not Params, so "
                        "save() did not write them: make each a Param (or persist it in the stage's writer)"
                        if lost else "")
                raise _Fail(f"{kind}: the loaded stage gives different output ({_row_diff(before, after)}){hint}")
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check_persistence(kit) -> None:
    from pyspark.ml import Pipeline, PipelineModel

    for i, example in enumerate(kit.examples):
        stage, df = example.stage, example.transform_df
        fit_df = _fit_df(example)
        estimator = kit._is_estimator()
        transform = (lambda s: s.fit(fit_df).transform(df)) if estimator else (lambda s: s.transform(df))
        two_fits = kit.unrepeatable  # two fits differ anyway: check_estimator has said so, once
        reference = kit._given_rows(example)  # of the one fit the other checks use too
        _roundtrip(kit, stage, "stage", None if two_fits else transform, type(stage).load,
                        writer_protocol=kit.first_example and i == 0, reference=reference)
        if estimator:
            model = kit._model(stage, example)
            _roundtrip(kit, model, "fitted model", lambda m: m.transform(df), type(model).load, reference=reference)
        if not (kit.first_example and i == 0):
            continue  # inside a Pipeline the stage saves the same way whatever its params: once per stage
        pipeline = Pipeline(stages=[stage])
        _roundtrip(kit, pipeline, "one-stage Pipeline", None if two_fits else (lambda p: p.fit(fit_df).transform(df)),
                        Pipeline.load, reference=reference)
        fitted = PipelineModel(stages=[kit._model(stage, example) if estimator else stage])
        _roundtrip(kit, fitted, "PipelineModel", lambda m: m.transform(df), PipelineModel.load, reference=reference)


def check_pickle(kit) -> None:
    from pyspark import cloudpickle

    for example in kit.examples:
        clone = cloudpickle.loads(cloudpickle.dumps(example.stage))
        for a, b in _stage_pairs(example.stage, clone):
            for p in a.params:
                if a.isDefined(p) and not _same(a.getOrDefault(p), b.getOrDefault(b.getParam(p.name))):
                    raise _Fail(f"param {p.name!r} changed through cloudpickle")
        if kit.unrepeatable:
            continue  # the clone's fit differs from the original's anyway (reported by check_estimator)
        if rows(kit._apply(clone, example)) != kit._given_rows(example):
            raise _Fail("the unpickled stage gives different output")
