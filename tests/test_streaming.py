"""Structured Streaming: the featurizer pipeline on a file stream, exactly once across a restart.

A real streaming query (binaryFile source, parquet sink with a checkpoint) on the test session's
local Spark; files are moved into the watched folder atomically, as a producer should.
"""

from __future__ import annotations

import json
import os

import numpy as np

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
