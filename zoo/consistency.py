"""``zoo check-model``: does every node of the cluster compute the same features?

Nodes differ (OpenCV and libjpeg builds, ONNX Runtime versions, CPU instruction sets, GPUs, a cache
whose file went bad), and features computed weeks apart are only comparable if they agree. The
check runs a set of reference images through the real ``image_featurizer`` code on the driver
(the reference) and inside Spark tasks spread over the executors (tasks are repeated until every
executor has answered, or reported missing), and compares each node's features with the
reference: the largest absolute difference and the smallest cosine similarity, against a
tolerance (:func:`default_tolerance`).

The reference images are two real photographs shipped with sparkzoo (``zoo/reference_photos``, CC BY
2.0: natural texture and colour, where decoders and resamplers differ most) and images generated on
the driver (smooth gradients, hard edges and noise, encoded as JPEG once); all are sent to the
executors as bytes, so every node decodes exactly the same bytes. ``inputs`` uses your own images
instead.

A stored reference (:func:`write_reference`: the images' bytes and the features a reference set-up
computed, in one ``.npz`` read without pickles) pins the answer across machines and time: pinned
beside the model in the registry (``files.reference``, by sha256) it replaces the driver's own
answer, so the driver is checked too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FP32_TOLERANCE = 0.9999  # cosine, fp32 models decoded the same way
INT8_TOLERANCE = 0.999  # quantized models: a rounding step can move a value by one quantum
FAST_DECODE_TOLERANCE = 0.99  # decoding at reduced scale changes pixels


@dataclass
class NodeReport:
    """One executor's answer."""

    node: str  # host/executor
    host: str
    versions: dict[str, str] = field(default_factory=dict)  # sparkzoo, onnxruntime, opencv, numpy
    providers: list[str] = field(default_factory=list)
    images: int = 0
    max_abs_diff: float | None = None
    min_cosine: float | None = None
    ok: bool = False
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_images(count: int = 8, size: tuple[int, int] = (384, 512), seed: int = 2026) -> list[tuple[str, bytes]]:
    """``count`` deterministic JPEGs (path, bytes): the shipped photographs first, then generated ones."""
    from importlib import resources

    import cv2

    shipped = sorted((p for p in resources.files("zoo").joinpath("reference_photos").iterdir()
                      if p.name.endswith(".jpg")), key=lambda p: p.name)
    out = [(f"reference/{p.name}", p.read_bytes()) for p in shipped[:count]]
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(count - len(out)):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([(x / w) * 255, (y / h) * 255, ((x + y) / (w + h)) * 255], axis=-1)
        img = (0.6 * base + 0.4 * rng.uniform(0, 255, 3)).astype(np.uint8)
        for _ in range(6):  # shapes with edges
            c = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(10, h // 3)), c, -1)
        noise = rng.normal(0, 6, img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append((f"reference/{i:02d}.jpg", jpeg.tobytes()))
    return out


def default_tolerance(quantized: bool, fast_decode: bool) -> float:
    """The cosine similarity every node must reach (documented in docs/cli.md)."""
    if fast_decode:
        return FAST_DECODE_TOLERANCE
    return INT8_TOLERANCE if quantized else FP32_TOLERANCE


def write_reference(path: str, model: str, images: list[tuple[str, bytes]], features: dict[str, Any], cut: Any,
                    model_sha256: str) -> None:
    """Store reference images and their features (``.npz``, no pickles) for :func:`read_reference`."""
    names = [p for p, _ in images]
    blobs = [np.frombuffer(c, np.uint8) for _, c in images]
    np.savez(path, paths=np.array(names), cut=np.array(str(cut)), model_sha256=np.array(model_sha256),
             offsets=np.cumsum([0, *[len(b) for b in blobs]]), data=np.concatenate(blobs),
             features=np.stack([np.asarray(features[p], np.float32) for p in names]))


def read_reference(path: str, cut: Any, model_sha256: str) -> tuple[list[tuple[str, bytes]], dict[str, np.ndarray]]:
    """(images, features) of a stored reference; ConfigError when it is for another model or cut."""
    from zoo.errors import ConfigError

    with np.load(path, allow_pickle=False) as ref:
        if str(ref["model_sha256"]) != model_sha256 or str(ref["cut"]) != str(cut):
            raise ConfigError(f"the stored reference {path} is for model {str(ref['model_sha256'])[:12]}... cut "
                              f"{ref['cut']}, not {model_sha256[:12]}... cut {cut}")
        offsets, data = ref["offsets"], ref["data"]
        paths = [str(p) for p in ref["paths"]]
        images = [(p, data[offsets[i]:offsets[i + 1]].tobytes()) for i, p in enumerate(paths)]
        return images, {p: ref["features"][i].astype(np.float64) for i, p in enumerate(paths)}


def _images_of(folder: str) -> list[tuple[str, bytes]]:
    files = sorted(p for p in Path(folder).expanduser().iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        from zoo.errors import ConfigError

        raise ConfigError(f"--inputs {folder}: no files")
    return [(p.name, p.read_bytes()) for p in files]


def _node_features(batches, job):
    """mapInArrow body: the featurizer's own executor code, plus who ran it."""
    import os
    import socket

    import cv2
    import onnxruntime
    import pyarrow as pa

    from zoo.runtime.models import session_for
    from zoo.stages.workers.images import featurize_images
    from zoo.version import __version__

    from zoo.errors import DeviceError

    work = os.path.basename(os.getcwd())
    node = f"{socket.gethostname()}/executor {work}" if work.isdigit() else f"{socket.gethostname()}/pid {os.getpid()}"
    versions = json.dumps({"sparkzoo": __version__, "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                           "numpy": np.__version__})
    batches = list(batches)  # a few reference images: kept, so a node that cannot run still answers for each
    try:
        outs = list(featurize_images(iter(batches), job))
        providers = json.dumps(session_for(job.spec, job.runtime, on_executor=True).get_providers())
    except DeviceError as exc:  # e.g. --device cuda on a node without a working GPU: this node fails, not the check
        outs = [pa.RecordBatch.from_arrays(
            [b.column("task"), b.column("path"), pa.nulls(b.num_rows, pa.binary()),
             pa.nulls(b.num_rows, pa.list_(pa.float32())), pa.array([f"{type(exc).__name__}: {exc}"] * b.num_rows)],
            names=["task", "path", "content", "features", job.error_col]) for b in batches]
        providers = json.dumps([])
    for out in outs:
        n = out.num_rows
        yield pa.RecordBatch.from_arrays(
            [*out.columns, pa.array([node] * n), pa.array([socket.gethostname()] * n), pa.array([versions] * n),
             pa.array([providers] * n)],
            names=[*out.schema.names, "node", "host", "versions", "providers"])


def check_model(spark: Any, model: str, *, cut: int | str = 1, inputs: str | None = None,
                tolerance: float | None = None, preprocess: str = "", fast_decode: bool = False,
                rounds: int = 3, reference: str | None = None,
                write_to: str | None = None, device: str = "auto") -> tuple[list[NodeReport], float]:
    """(a report per executor, the tolerance used); see the module documentation. ``reference``: a
    stored reference file (default: the one the registry pins beside the model, if any, else the
    driver computes it); ``write_to``: store the driver's answer there as a reference. ``tolerance``:
    the minimum cosine (default: the registry entry's ``tolerance``, else :func:`default_tolerance`).
    ``device``: as the featurizer's; the driver's reference is always computed on its CPU, so a GPU
    node is compared with CPU features, and a node where ``cuda`` cannot run fails with the reason."""
    import pyarrow as pa
    from pyspark.sql import types as T

    from zoo.stages.image_featurizer import ImageFeaturizer
    from zoo.stages.workers.images import featurize_images

    stored = reference or (None if inputs else _pinned_reference(model))
    images = _images_of(inputs) if inputs else reference_images()
    stage = ImageFeaturizer(modelName=model, cut=cut, preprocess=preprocess, outputFormat="array",
                            handleInvalid="keep", fastDecode=fast_decode, outputCol="features", device=device)
    schema = T.StructType([T.StructField("task", T.IntegerType()), T.StructField("path", T.StringType()),
                           T.StructField("content", T.BinaryType())])
    job = stage._executor_job(spark.createDataFrame([(0, p, c) for p, c in images], schema))
    quantized = bool(job.spec.cut and job.spec.cut.quantized) or "int8" in model.lower()
    if tolerance is None:
        tolerance = _declared_tolerance(model) or default_tolerance(quantized, fast_decode)
    on_driver = dataclasses.replace(job, runtime=dataclasses.replace(job.runtime, device="cpu"))

    batch = pa.RecordBatch.from_arrays([pa.array([0] * len(images), pa.int32()), pa.array([p for p, _ in images]),
                                        pa.array([c for _, c in images], pa.binary())], names=["task", "path", "content"])
    reference = {}
    if stored:  # pinned answer: the driver is one more node to check
        images, reference = read_reference(stored, cut, job.spec.source_sha256)
        batch = pa.RecordBatch.from_arrays([pa.array([0] * len(images), pa.int32()), pa.array([p for p, _ in images]),
                                            pa.array([c for _, c in images], pa.binary())],
                                           names=["task", "path", "content"])
    driver = {}
    for out in featurize_images([batch], on_driver):  # the driver's own answer, by the very same code
        for path, feats in zip(out.column("path").to_pylist(), out.column("features").to_pylist()):
            driver[path] = None if feats is None else np.asarray(feats, np.float64)
    if write_to:
        write_reference(write_to, model, images, driver, cut, job.spec.source_sha256)
    if not stored:
        reference = driver

    jsc = spark.sparkContext._jsc.sc()
    ids = jsc.getExecutorIds()  # a Scala Seq; empty on a local master
    expected = sorted(str(ids.apply(i)) for i in range(ids.size()))
    slots = max(1, len(expected))
    out_schema = T.StructType([*schema.fields, T.StructField("features", T.ArrayType(T.FloatType())),
                               T.StructField(stage.getErrorCol(), T.StringType()), T.StructField("node", T.StringType()),
                               T.StructField("host", T.StringType()), T.StructField("versions", T.StringType()),
                               T.StructField("providers", T.StringType())])
    answers: dict[str, list] = {}
    for attempt in range(rounds):  # tasks land where the scheduler puts them: repeat until every executor answered
        tasks = slots * (2 + 2 * attempt)
        rows = [(t, p, c) for t in range(tasks) for p, c in images]
        df = spark.createDataFrame(rows, schema).repartition(tasks, "task")
        for r in df.mapInArrow(lambda b: _node_features(b, job), out_schema).drop("content").collect():
            answers.setdefault(r["node"], []).append(r)
        seen = {n.rsplit(" ", 1)[-1] for n in answers if "/executor " in n}
        if not expected or set(expected) <= seen:
            break
    reports = [_compare(node, rows, reference, tolerance) for node, rows in sorted(answers.items())]
    if stored:  # the driver against the stored answer too
        import socket

        import cv2
        import onnxruntime

        from zoo.version import __version__

        mine = [{"path": p, "features": None if f is None else f.tolist(), "error": None, "host": socket.gethostname(),
                 "versions": json.dumps({"sparkzoo": __version__, "onnxruntime": onnxruntime.__version__,
                                         "opencv": cv2.__version__, "numpy": np.__version__}),
                 "providers": json.dumps([])} for p, f in driver.items()]
        reports.insert(0, _compare(f"{socket.gethostname()}/driver", mine, reference, tolerance))
    seen = {n.rsplit(" ", 1)[-1] for n in answers if "/executor " in n}
    for missing in sorted(set(expected) - seen) if seen else []:
        reports.append(NodeReport(f"executor {missing}", "?", problem=f"no task ran on executor {missing} in "
                                                                        f"{rounds} rounds", ok=False))
    return reports, tolerance


def _declared_tolerance(model: str) -> float | None:
    """The minimum cosine a registry entry declares for its model (``tolerance``), if any."""
    from zoo.config import settings
    from zoo.hub import registry
    from zoo.hub.refs import parse

    ref = parse(model)
    if ref.kind == "path":
        return None
    entry = registry.load(settings()).get(ref.text if ref.kind == "name" else ref.value)
    return entry.tolerance if entry is not None else None


def _pinned_reference(model: str) -> str | None:
    """The stored reference the registry pins beside ``model`` (``files.reference``), fetched; None if none."""
    from zoo.errors import ModelNotFoundError
    from zoo.hub.sidecars import path_of

    try:
        return str(path_of(model, "reference"))
    except ModelNotFoundError:
        return None


def _compare(node: str, rows: list, reference: dict, tolerance: float) -> NodeReport:
    first = rows[0]
    report = NodeReport(node, first["host"], json.loads(first["versions"]), json.loads(first["providers"]))
    worst_diff, worst_cos = 0.0, 1.0
    for r in rows:
        want = reference[r["path"]]
        if (r["features"] is None) != (want is None):
            report.problem = f"{r['path']}: " + (r["error"] or "features where the driver had none")
            return report
        if want is None:
            continue
        got = np.asarray(r["features"], np.float64)
        worst_diff = max(worst_diff, float(np.abs(got - want).max()))
        denom = float(np.linalg.norm(got) * np.linalg.norm(want))
        worst_cos = min(worst_cos, float(got @ want / denom) if denom else (1.0 if not got.any() and not want.any() else 0.0))
    report.images = len({r["path"] for r in rows})
    report.max_abs_diff, report.min_cosine = worst_diff, worst_cos
    report.ok = worst_cos >= tolerance
    if not report.ok:
        report.problem = f"cosine {worst_cos:.6f} below the tolerance {tolerance}"
    return report
