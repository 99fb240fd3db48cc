"""ONNX Runtime sessions on workers: the node's cached optimised model files and automatic batch sizes.

Real ONNX Runtime and real models throughout (the ResNet-like test network and the shared
MobileNet v2 int8); the optimiser really runs in its child process.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import pytest

from _models import resnet_like
from zoo.hub import derived, optimized
from zoo.hub.cache import ModelCache, machine_fingerprint
from zoo.runtime import sessions
from zoo.runtime.sessions import RuntimeOptions

CPU1 = RuntimeOptions(device="cpu", intra_op_threads=1)


def _model(tmp_path, data: bytes):
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / f"{sha}.onnx"
    path.write_bytes(data)
    return sha, path


def _outputs(sess, seed: int = 0) -> np.ndarray:
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 2 for d in inp.shape]
    x = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return sess.run(None, {inp.name: x})[0]


def _optimised_file(home, sha: str):
    """The optimised file the cache recorded for model ``sha`` on this machine (None: none recorded)."""
    record = derived.read(ModelCache(home), optimized.derivation(sha))
    return None if record is None else ModelCache(home).optimized_path(record.output.sha256)


def _forget(sha: str) -> None:
    """Drop this process's cached sessions of ``sha`` so the next call really loads."""
    for key in [k for k in sessions._SESSIONS if k[0] == sha]:
        del sessions._SESSIONS[key]


@pytest.mark.parametrize("which", ["resnet_like", "mobilenet_int8"])
def test_worker_session_loads_the_cached_optimised_file_and_computes_the_same(tmp_path, which, request):
    data = resnet_like(seed=3) if which == "resnet_like" else request.getfixturevalue("mobilenet_bytes")
    sha, path = _model(tmp_path, data)
    home = tmp_path / "home"
    _forget(sha)
    plain = sessions.session(sha + "-plain", lambda: path, CPU1)  # in-process optimisation, as before
    loads = sessions.model_loads(sha)
    fast = sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    assert sessions.model_loads(sha) == loads + 1
    cached = _optimised_file(home, sha)
    assert cached.is_file() and cached.parent.name == "optimized" and os.stat(cached).st_nlink == 1
    assert cached.name == f"{hashlib.sha256(cached.read_bytes()).hexdigest()}.onnx"  # named by its own bytes
    assert not [p for p in cached.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind
    np.testing.assert_allclose(_outputs(fast), _outputs(plain), rtol=1e-5, atol=1e-5)
    # the next worker on the node (a fresh load in this process) reuses the file instead of rebuilding it
    stamp = cached.stat().st_mtime_ns
    _forget(sha)
    again = sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    assert cached.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(_outputs(again), _outputs(plain), rtol=1e-5, atol=1e-5)
    _forget(sha)


def test_a_damaged_optimised_file_is_quarantined_and_built_again(tmp_path, caplog):
    sha, path = _model(tmp_path, resnet_like(seed=4))
    home = tmp_path / "home"
    _forget(sha)
    sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    cached = _optimised_file(home, sha)
    cached.chmod(0o644)
    cached.write_bytes(b"not an onnx model")
    _forget(sha)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        sess = sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    assert _outputs(sess).shape[0] == 2
    assert any("quarantined" in r.getMessage() and str(cached) in r.getMessage() for r in caplog.records)
    assert [q.read_bytes() for q in (home / "quarantine").glob(f"{cached.name}.*")] == [b"not an onnx model"]
    rebuilt = _optimised_file(home, sha)  # built again from the model (ONNX Runtime names nodes anew each time)
    assert rebuilt.is_file() and hashlib.sha256(rebuilt.read_bytes()).hexdigest() == rebuilt.stem
    _forget(sha)


def test_an_unwritable_home_falls_back_to_optimising_in_process(tmp_path):
    sha, path = _model(tmp_path, resnet_like(seed=5))
    home = tmp_path / "not-a-directory"
    home.write_text("a file where the cache should be")  # mkdir of home/optimized fails
    _forget(sha)
    sess = sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    reference = sessions.session(sha + "-plain", lambda: path, CPU1)
    np.testing.assert_allclose(_outputs(sess), _outputs(reference), rtol=1e-5, atol=1e-5)
    assert home.read_text() == "a file where the cache should be"
    _forget(sha)


def test_fingerprint_names_this_machine_and_runtime():
    fp = machine_fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert machine_fingerprint() == fp  # stable within a process (and across: it hashes fixed facts)


def test_rows_per_call_is_automatic_only_for_zero():
    assert sessions.rows_per_call(0, "cpu") == sessions.CPU_BATCH == 4
    assert sessions.rows_per_call(17, "cpu") == 17
    if not sessions.cuda_available():
        assert sessions.rows_per_call(0, "auto") == sessions.CPU_BATCH
    else:
        assert sessions.rows_per_call(0, "cuda") == sessions.GPU_BATCH


def test_images_are_decoded_ahead_only_where_onnx_runtime_leaves_cores_idle():
    assert not sessions.decodes_ahead(RuntimeOptions(device="cpu", intra_op_threads=1))  # Spark's default: a task per core
    assert sessions.decodes_ahead(RuntimeOptions(device="cpu", intra_op_threads=2))  # numThreads or spark.task.cpus > 1
    # 0 = the task's CPUs; outside a task, this machine's (up to 4)
    assert sessions.decodes_ahead(RuntimeOptions(device="cpu")) == (sessions.task_cpus() > 1)
    if not sessions.cuda_available():
        assert not sessions.decodes_ahead(RuntimeOptions(device="auto", intra_op_threads=1))


def test_prepared_slices_come_in_order_and_a_buffer_is_never_written_while_in_use():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from zoo.stages.workers.images import prepared

    buffers = [np.zeros(1), np.zeros(1)]
    threads: set[str] = set()

    def prepare(start: int, buf: np.ndarray) -> list[int]:
        threads.add(threading.current_thread().name)
        buf[0] = start
        return [start]

    with ThreadPoolExecutor(1, thread_name_prefix="zoo-decode") as pool:
        seen = []
        for rows, buf in prepared(prepare, range(0, 50, 5), buffers, pool):
            time.sleep(0.002)  # the caller "runs" the batch while the next one is prepared into the other buffer
            assert buf[0] == rows[0], "the buffer in use was overwritten by the next slice"
            seen.append(rows[0])
        assert seen == list(range(0, 50, 5)) and threads == {"zoo-decode_0"}
        assert list(prepared(prepare, range(0), buffers, pool)) == []

        def failing(start: int, buf: np.ndarray) -> list[int]:
            if start == 10:
                raise ValueError("row 10 is bad")
            return [start]

        got = []
        with pytest.raises(ValueError, match="row 10 is bad"):
            for rows, _ in prepared(failing, range(0, 20, 5), buffers, pool):
                got.append(rows[0])
        assert got == [0, 5]  # the error reaches the caller at its own slice, after the slices before it
    assert [rows for rows, _ in prepared(prepare, range(0, 10, 5), buffers[:1], None)] == [[0], [5]]  # no pool: in line


def test_outside_a_spark_task_cuda_uses_zoo_cuda_device_else_gpu_0(monkeypatch):
    from zoo.errors import ConfigError

    monkeypatch.delenv("ZOO_CUDA_DEVICE", raising=False)
    assert sessions.task_gpu() == (False, None)
    assert sessions.cuda_device(required=True) == 0
    monkeypatch.setenv("ZOO_CUDA_DEVICE", "2")
    assert sessions.cuda_device(required=True) == 2
    monkeypatch.setenv("ZOO_CUDA_DEVICE", "gpu2")
    with pytest.raises(ConfigError, match="ZOO_CUDA_DEVICE='gpu2'"):
        sessions.cuda_device(required=True)


def _in_a_task(spark, env: dict[str, str]) -> list:
    """Run the GPU choice inside real Spark tasks (local mode: Spark assigns no GPU here)."""

    def choose(_):
        import os

        from zoo.runtime import sessions as runtime
        from zoo.errors import DeviceError

        os.environ.pop("ZOO_CUDA_DEVICE", None)
        os.environ.update(env)
        try:
            yield runtime.task_gpu(), runtime.cuda_device(required=False), runtime.cuda_device(required=True)
        except DeviceError as exc:
            yield runtime.task_gpu(), runtime.cuda_device(required=False), str(exc)

    return spark.sparkContext.parallelize([0], 1).mapPartitions(choose).collect()


def test_in_a_spark_task_without_an_assigned_gpu_cuda_fails_fast_and_auto_stays_on_cpu(spark):
    [(where, auto, cuda)] = _in_a_task(spark, {})
    assert tuple(where) == (True, None)
    assert auto is None, "auto must not take a GPU Spark did not assign"
    assert "Spark assigned no GPU to this task" in cuda
    assert "spark.task.resource.gpu.amount" in cuda and "ZOO_CUDA_DEVICE" in cuda
    # where Spark does not schedule GPUs (local mode) the user may choose one explicitly
    [(where, auto, cuda)] = _in_a_task(spark, {"ZOO_CUDA_DEVICE": "1"})
    assert (auto, cuda) == (1, 1)
