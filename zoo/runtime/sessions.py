"""ONNX Runtime sessions on executors: one per Python worker per model and settings, never per task.

Sessions live in a small LRU bounded by the size of the model files they were built from
(``ZOO_SESSION_CACHE_MB``, default 4096). Every load is counted (:func:`model_loads`, public as ``zoo.model_loads``) so tests and
benchmarks can prove a worker loads a model once.

Device choice: ``cpu``; ``cuda`` (fails fast with :class:`~zoo.errors.DeviceError` when CUDA does
not really work here, or when a Spark task was assigned no GPU); ``auto`` (CUDA only after a real
probe succeeds and a GPU is this task's, else CPU). See :func:`cuda_device` for which GPU. ONNX Runtime's
fallback noise (e.g. a missing libcublasLt) is kept out of the logs during the probe.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from zoo.errors import DeviceError, InvalidModelError
from zoo.log import get_logger

if TYPE_CHECKING:
    from zoo.hub.cache import ModelCache

log = get_logger("runtime")

DEVICES = ("auto", "cpu", "cuda")
_LOCK = threading.Lock()
_SESSIONS: "OrderedDict[tuple, tuple[object, int]]" = OrderedDict()
_LOADS: Counter = Counter()
_CUDA_OK: bool | None = None


@dataclass(frozen=True)
class RuntimeOptions:
    """How a session runs: device, threads (0 = decide per task), graph optimisation level."""

    device: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    optimization: str = "all"  # disable | basic | extended | all
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers in the user's order (empty: from device)


@dataclass(frozen=True)
class GraphBeside:
    """A graph made in memory (e.g. with extra outputs) whose external data files are in ``folder``:
    ONNX Runtime reads them from there (``session.model_external_initializers_file_folder_path``)."""

    graph: bytes
    folder: Path
    weights: int  # bytes of the external data files, for the session budget


def model_loads(sha256: str | None = None) -> int:
    """Sessions this Python process has created (for one model, or in total)."""
    return _LOADS[sha256] if sha256 else sum(_LOADS.values())


def _budget() -> int:
    try:
        return int(float(os.environ.get("ZOO_SESSION_CACHE_MB", "4096")) * 2**20)
    except ValueError:
        return 4096 * 2**20


def _identity_model() -> bytes:
    from onnx import TensorProto, helper

    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", vi[:1], vi[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def cuda_available() -> bool:
    """True when a CUDA session really runs on the GPU here (probed once per process, quietly)."""
    global _CUDA_OK
    if _CUDA_OK is None:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            _CUDA_OK = False
        else:
            opts = ort.SessionOptions()
            opts.log_severity_level = 4
            ort.set_default_logger_severity(4)
            try:
                sess = ort.InferenceSession(_identity_model(), opts, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
                _CUDA_OK = sess.get_providers()[0] == "CUDAExecutionProvider"
            except Exception:
                _CUDA_OK = False
            finally:
                ort.set_default_logger_severity(3)
    return _CUDA_OK


def task_gpu() -> tuple[bool, int | None]:
    """(running in a Spark task?, the GPU address Spark assigned to it, if any)."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
    except Exception:
        return False, None
    if ctx is None:
        return False, None
    try:
        gpus = ctx.resources().get("gpu")
        return True, int(gpus.addresses[0]) if gpus and gpus.addresses else None
    except Exception:
        return True, None


NO_GPU_ASSIGNED = (
    "device='cuda' was requested but Spark assigned no GPU to this task: set "
    "spark.executor.resource.gpu.amount, spark.task.resource.gpu.amount and a GPU discovery script "
    "(docs/cluster.md: GPUs), or set ZOO_CUDA_DEVICE to a GPU number where Spark does not schedule GPUs (local mode)"
)


def cuda_device(required: bool) -> int | None:
    """The GPU this task may use.

    In a Spark task: the GPU Spark assigned (``TaskContext.resources()["gpu"]``), else
    ``ZOO_CUDA_DEVICE``; with neither, ``None`` (``auto`` falls back to CPU) or, when CUDA is
    ``required``, a :class:`DeviceError` before any model is loaded. Several tasks sharing a GPU
    Spark never gave them is how executors run out of GPU memory, so sparkzoo does not guess.
    Outside a task (the driver, a plain script): ``ZOO_CUDA_DEVICE``, else GPU 0.
    """
    from zoo.config import settings

    in_task, assigned = task_gpu()
    if assigned is not None:
        return assigned
    chosen = settings().cuda_device
    if chosen is not None or not in_task:
        return chosen or 0
    if required:
        raise DeviceError(NO_GPU_ASSIGNED)
    return None


def task_cpus() -> int:
    """CPUs Spark gave the running task (``spark.task.cpus``); 1 outside a task on a 1-core box."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except Exception:
        pass
    return max(1, min(os.cpu_count() or 1, 4))


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")  # usable only where cuda_available()


def requested_providers(names: tuple[str, ...]) -> tuple[str, list]:
    """(resolved device, providers) for execution providers the user listed, in their order: each must
    be one this ONNX Runtime offers; a GPU provider is used only where a CUDA session really runs
    (onnxruntime-gpu lists them on machines without a GPU), on the GPU Spark gave the task."""
    import onnxruntime as ort

    offered = ort.get_available_providers()
    unknown = [n for n in names if n not in offered]
    if unknown:
        raise DeviceError(f"execution provider {unknown[0]!r} is not in this ONNX Runtime ({ort.__version__}); it offers "
                          f"{', '.join(offered)}")
    chosen: list = []
    gpu = None
    for name in names:
        if name in GPU_PROVIDERS:
            if not cuda_available():
                log.info("skipping %s: no usable GPU here", name)
                continue
            gpu = cuda_device(required=False) if gpu is None else gpu
            chosen.append((name, {"device_id": gpu or 0}))
        else:
            chosen.append(name)
    if not chosen:
        raise DeviceError(f"none of the execution providers {list(names)} can run here (no usable GPU); add "
                          "CPUExecutionProvider to fall back to the CPU")
    first = chosen[0][0] if isinstance(chosen[0], tuple) else chosen[0]
    return (f"cuda:{gpu or 0}" if first in GPU_PROVIDERS else "cpu"), chosen


def providers(device: str) -> tuple[str, list]:
    """(resolved device, ONNX Runtime providers) for ``device`` in this task."""
    if device not in DEVICES:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu" or (device == "auto" and not cuda_available()):
        return "cpu", ["CPUExecutionProvider"]
    gpu = cuda_device(required=device == "cuda")
    if gpu is None:
        return "cpu", ["CPUExecutionProvider"]
    if not cuda_available():
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():  # the CPU build (macOS, aarch64)
            why = (f"the installed ONNX Runtime ({ort.__version__}) is a CPU-only build; on Linux x86_64 or "
                   "Windows x64 install onnxruntime-gpu instead")
        else:
            why = "no GPU, driver or CUDA libraries"
        raise DeviceError(
            f"device='cuda' was requested but ONNX Runtime cannot run CUDA here ({why}); use device='auto' "
            "or 'cpu', or schedule the task on a GPU executor"
        )
    return f"cuda:{gpu}", [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]


CPU_BATCH = 4
GPU_BATCH = 64


def rows_per_call(batch_size: int, device: str) -> int:
    """``batch_size``, or for 0 the automatic choice for ``device`` in this task.

    On CPU a convolutional network runs about as many images per second at 4 rows per call as at
    32 (measured on one core: ResNet-50 13.4 img/s at 1, 4 and 8 rows; MobileNet v2 int8 280 at 4,
    292 at 8, 222 at 32) while its intermediate tensors grow with the batch (ResNet-50: about 45
    MB more peak memory per 4 rows), so small batches keep workers lean. A GPU needs large
    batches to be busy.
    """
    if batch_size > 0:
        return batch_size
    resolved, _ = providers(device)
    return CPU_BATCH if resolved == "cpu" else GPU_BATCH


def decodes_ahead(options: RuntimeOptions) -> bool:
    """Whether an image task decodes its next batch on a second thread while ONNX Runtime runs this one.

    Only where a run leaves cores idle: on a GPU (the CPU would wait for it), or with more than one
    ONNX Runtime thread per task (``spark.task.cpus`` > 1, or ``numThreads``), whose threads wait for
    each other at every operator; a decoding thread fills those gaps. Measured in Spark on 2 cores
    with ``spark.task.cpus=2``, arms interleaved (benchmarks/RESULTS.md): MobileNet v2 int8 175 -> 212
    img/s on the shared photos, ResNet-50 35.4 -> 36.7 on 800x600 JPEGs and 39.1 -> 39.9 on the photos.
    With one thread per task (Spark's default, a task per core) every core is already busy with a
    task of its own, and a second thread would only add switching.
    """
    device, _ = requested_providers(options.providers) if options.providers else providers(options.device)
    return device != "cpu" or (options.intra_op_threads or task_cpus()) > 1


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
OPTIMIZATION_LEVELS = tuple(_LEVELS)  # the values of a stage's graphOptimization


def _options(options: RuntimeOptions, intra: int, level: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = options.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def _create(model: "Path | bytes | GraphBeside", opts, provs: list):
    import onnxruntime as ort

    if isinstance(model, GraphBeside):
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(model.folder))
        return ort.InferenceSession(model.graph, opts, providers=provs)
    return ort.InferenceSession(str(model) if isinstance(model, Path) else model, opts, providers=provs)


def _size(model: "Path | bytes | GraphBeside") -> int:
    """What a session built from ``model`` weighs in the budget: its file(s) or bytes."""
    if isinstance(model, GraphBeside):
        return len(model.graph) + model.weights
    if isinstance(model, Path):  # a multi-file model's bundle: its weight files too
        return sum(f.stat().st_size for f in model.parent.iterdir()) if model.parent.parent.name == "bundles" \
            else model.stat().st_size
    return len(model)


def session(sha256: str, load: Callable[[], "Path | bytes | GraphBeside"], options: RuntimeOptions = RuntimeOptions(),
            cache: "ModelCache | None" = None):
    """The cached session for model ``sha256`` (``load`` returns its file or bytes when needed).

    With ``cache`` (the node's), a CPU session at the full optimisation level loads the node's
    cached optimised file instead of optimising in this process (see :mod:`zoo.hub.optimized`):
    same speed, about half the worker's peak memory.
    """
    device, provs = requested_providers(options.providers) if options.providers else providers(options.device)
    intra = options.intra_op_threads or task_cpus()
    key = (sha256, device, intra, options.inter_op_threads, options.optimization, options.providers)
    with _LOCK:
        hit = _SESSIONS.get(key)
        if hit is not None:
            _SESSIONS.move_to_end(key)
            return hit[0]
        model = load()
        sess = None
        if cache is not None and device == "cpu" and options.optimization == "all" and isinstance(model, Path):
            from zoo.hub import optimized

            sess = optimized.load(model, sha256, cache,
                                  lambda path: _create(path, _options(options, intra, "ORT_DISABLE_ALL"), provs))
        if sess is None:
            try:
                sess = _create(model, _options(options, intra, _LEVELS[options.optimization]), provs)
            except Exception as exc:
                raise InvalidModelError(_load_failure(sha256, model, exc)) from None
        size = _size(model)
        _LOADS[sha256] += 1
        log.debug("loaded model %s on %s with %d threads (pid %d)", sha256[:12], device, intra, os.getpid())
        _SESSIONS[key] = (sess, size)
        while len(_SESSIONS) > 1 and sum(s for _, s in _SESSIONS.values()) > _budget():
            _SESSIONS.popitem(last=False)
        freeze_long_lived()
        return sess


def _load_failure(sha256: str, model: "Path | bytes | GraphBeside", exc: Exception) -> str:
    """What to tell the user when ONNX Runtime refuses a model: for a locale this node lacks (a text
    model's StringNormalizer), which node, which locale and the fixes; else ONNX Runtime's words."""
    if "locale" in str(exc) and isinstance(model, (Path, bytes)):
        import onnx

        from zoo.hub.onnx_files import locale_problem

        try:
            proto = onnx.load(str(model), load_external_data=False) if isinstance(model, Path) \
                else onnx.load_from_string(model)
            problem = locale_problem(proto, sha256[:12])
        except Exception:  # the model cannot even be parsed: ONNX Runtime's own words say more
            problem = None
        if problem:
            return f"on {os.uname().nodename}: {problem}"
    return f"ONNX Runtime cannot load model {sha256[:12]}: {type(exc).__name__}: {exc}"


def freeze_long_lived() -> None:
    """Move every object alive now out of the cyclic garbage collector's sight (``gc.freeze``).

    Why: PySpark's daemon runs a full ``gc.collect()`` in a reused Python worker after every task.
    Once a worker holds ONNX Runtime, OpenCV, pyarrow and a session (~70,000 tracked objects), that
    collection costs ~35 ms of CPU per task, most of a Python task's fixed cost (benchmarks/RESULTS.md);
    frozen objects are skipped, so it drops to microseconds. Called after each session load, when
    the long-lived objects exist. Safe: reference counting still frees frozen objects; only a
    reference cycle among them would stay until the worker exits, and a worker's modules and
    cached sessions live that long anyway.
    """
    import gc

    gc.collect()
    gc.freeze()
