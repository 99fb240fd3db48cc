"""Structured Streaming: the featurizer pipeline on a file stream, exactly once across a restart.

A real streaming query (binaryFile source, parquet sink with a checkpoint) on the test session's
local Spark; files are moved into the watched folder atomically, as a producer should.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import zoo
from zoo.testing import tiny


def _drop(folder, names, tmp):
    for name in names:
        k = int(name[3:6])
        staged = tmp / name
        staged.write_bytes(tiny.jpeg(20 + k, 24 + k % 3, seed=k))
        os.replace(staged, folder / name)  # atomic: the stream never sees half a file


def test_featurizing_a_file_stream_is_exactly_once_across_a_restart(spark, tmp_path):
    watched, staging, out, checkpoint = (tmp_path / d for d in ("in", "staging", "out", "checkpoint"))
    watched.mkdir()
    staging.mkdir()
    names = [f"img{k:03d}.jpg" for k in range(13)]
    _drop(watched, names[:6], staging)

    static = zoo.read_images(spark, str(watched), partitions=0, content=True)  # a file stream carries the bytes
    model = zoo.pipeline(tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS),
                         outputFormat="array").fit(static)
    stream = spark.readStream.format("binaryFile").schema(static.schema).option("pathGlobFilter", "*.jpg").load(str(watched))
    assert stream.isStreaming

    def start():
        return (model.transform(stream).select("path", "features").writeStream.format("parquet")
                .option("path", str(out)).option("checkpointLocation", str(checkpoint)).start())

    query = start()
    try:
        query.processAllAvailable()
        _drop(watched, names[6:10], staging)  # arrive while the query runs
        query.processAllAvailable()
    finally:
        query.stop()
    _drop(watched, names[10:], staging)  # arrive while it is stopped
    query = start()  # resumes from the checkpoint
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    assert query.exception() is None

    rows = spark.read.parquet(str(out)).collect()
    seen = [os.path.basename(r["path"]) for r in rows]
    assert sorted(seen) == names, "every file featurized exactly once: none lost, none duplicated"
    batch = {os.path.basename(r["path"]): r["features"] for r in
             model.transform(zoo.read_images(spark, str(watched))).select("path", "features").collect()}
    for r in rows:
        np.testing.assert_allclose(r["features"], batch[os.path.basename(r["path"])], rtol=1e-6)


@pytest.mark.slow
def test_the_documented_streaming_recipe_runs_as_written_and_writes_each_photo_once(spark, mnv2, tmp_path):
    """docs/python-api.md "Streaming", executed: photos arrive in batches (renamed in, as producers
    must), the query is stopped and started again from its checkpoint, and Spark's reader sees every
    photo once, with the features a batch run gives. Only the folders, the model (the offline suite
    serves MobileNet v2 from ../shared as mnv2-local) and the trigger interval are this machine's."""
    import re
    import shutil

    from conftest import PHOTOS, REPO

    text = (REPO / "docs" / "python-api.md").read_text()
    section = text[text.index("## Streaming"):]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    staging.mkdir()
    code = (code.replace('"/data/incoming"', repr(str(incoming))).replace('"/data/features"', repr(str(tmp_path / "out")))
            .replace('"/data/checkpoints/features"', repr(str(tmp_path / "checkpoint"))).replace('"mobilenetv2"', repr(mnv2))
            .replace('processingTime="30 seconds"', 'processingTime="0 seconds"'))  # no waiting between batches
    photos = sorted(PHOTOS.glob("n01*.JPEG"))[:9]

    def arrive(batch):
        for p in batch:
            shutil.copy(p, staging / p.name.replace(".JPEG", ".jpg"))
            os.replace(staging / p.name.replace(".JPEG", ".jpg"), incoming / p.name.replace(".JPEG", ".jpg"))

    arrive(photos[:4])
    namespace = {"spark": spark}
    exec(compile(code, "docs/python-api.md Streaming", "exec"), namespace)
    query = namespace["query"]
    try:
        query.processAllAvailable()
        arrive(photos[4:6])
        query.processAllAvailable()
    finally:
        query.stop()
    arrive(photos[6:])  # while stopped
    exec(compile(code, "docs/python-api.md Streaming", "exec"), namespace)  # started again: same checkpoint
    query = namespace["query"]
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    assert query.exception() is None
    rows = spark.read.parquet(str(tmp_path / "out")).select("path", "features").collect()
    assert sorted(os.path.basename(r["path"]) for r in rows) == sorted(p.name.replace(".JPEG", ".jpg") for p in photos)
    batch = {r["path"]: r["features"] for r in zoo.pipeline(mnv2, cut=1, outputFormat="array").fit(
        zoo.read_images(spark, str(incoming))).transform(zoo.read_images(spark, str(incoming))).collect()}
    for r in rows:
        np.testing.assert_allclose(r["features"], batch[r["path"]], rtol=1e-5, atol=1e-5)
