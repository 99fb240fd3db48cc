"""What a Spark Python worker imports to run our executor code must not include pandas or pyspark.ml
(~50 MB per worker that never uses them; it put ResNet-50 workers over the memory target).

Each case builds the job a stage really ships (its ``_executor_job``), pickles the executor
function as Spark does (cloudpickle), and runs it in a fresh interpreter that, like Spark's worker,
has ``pyspark.worker`` loaded, on a real Arrow batch; outputs must equal the in-process run."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
from pyspark import cloudpickle

import zoo
from zoo.testing import tiny
from zoo.stages.workers.images import featurize_images
from zoo.stages.workers.tensors import run_tensors

CHILD = """
import pickle, sys
import pyspark.worker, pyarrow as pa
fn = pickle.loads(open(sys.argv[1], 'rb').read())
batches = list(pa.ipc.open_stream(open(sys.argv[2], 'rb').read()))
print(repr([b.column(b.num_columns - 1).to_pylist() for b in fn(batches)]))
print('HEAVY', sorted(m for m in ('pandas', 'pyspark.ml') if m in sys.modules))
"""


def _run_in_fresh_worker(tmp_path, fn, batch: pa.RecordBatch) -> list:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    (tmp_path / "batch.arrow").write_bytes(sink.getvalue().to_pybytes())
    (tmp_path / "fn.pkl").write_bytes(cloudpickle.dumps(fn))
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "fn.pkl"), str(tmp_path / "batch.arrow")],
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
    return ast.literal_eval(result.stdout.splitlines()[0])


def test_image_featurizer_worker(spark, tmp_path):
    stage = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=1, handleInvalid="skip",
                      preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array", batchSize=2)
    rows = [*tiny.image_rows()[:3], ("bad.jpg", b"not an image")]
    df = spark.createDataFrame(rows, "path string, content binary")
    job = stage._executor_job(df)
    batch = pa.RecordBatch.from_arrays([pa.array([p for p, _ in rows]), pa.array([c for _, c in rows])],
                                       names=["path", "content"])
    expected = [b.column(b.num_columns - 1).to_pylist() for b in featurize_images([batch], job)]
    assert _run_in_fresh_worker(tmp_path, lambda batches: featurize_images(batches, job), batch) == expected
    assert len(expected[0]) == 3  # the bad row skipped


def test_onnx_model_worker(spark, tmp_path):
    rng = np.random.default_rng(1)
    pixels = [rng.normal(size=3 * 32 * 32).astype(np.float32) for _ in range(5)]
    df = spark.createDataFrame([(i, p.tolist()) for i, p in enumerate(pixels)], "id int, pixels array<float>")
    stage = zoo.stage("onnx_model", modelName=tiny.tiny_model_path(), feedDict={"input": "pixels"},
                      fetchDict={"probs": "probabilities"}, batchSize=2)
    _, _, job = stage._executor_job(df)
    batch = pa.RecordBatch.from_arrays([pa.array(range(5), pa.int32()), pa.array([p.tolist() for p in pixels],
                                                                                  pa.list_(pa.float32()))],
                                       names=["id", "pixels"])
    expected = [b.column(b.num_columns - 1).to_pylist() for b in run_tensors([batch], job)]
    assert _run_in_fresh_worker(tmp_path, lambda batches: run_tensors(batches, job), batch) == expected
    spark_rows = stage.transform(df).orderBy("id").collect()
    assert np.allclose([r.probs for r in spark_rows], expected[0])
