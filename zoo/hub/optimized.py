"""ONNX Runtime's optimised form of a model, built once per node in a child process and cached.

Why: creating a session at the full optimisation level makes ONNX Runtime hold the model
proto, its initializers and their re-laid-out (NCHWc, pre-packed) copies at once; for ResNet-50
that is about 280 MB on top of a 100 MB file, in every Python worker, for the whole life of the
worker (peak RSS never comes back down). Loading a model that is *already* optimised, with
optimisation switched off, needs about half of that and runs exactly as fast. So the first worker
on a node that needs a model runs the optimiser in a separate Python process (whose memory dies
with it), and every worker then loads the result.

The optimised file is a derived file (:mod:`zoo.hub.derived`): its derivation's inputs are the
model's sha256 and the machine fingerprint (:func:`zoo.hub.cache.machine_fingerprint`: the ONNX
Runtime version, the architecture and the CPU's feature flags, since at the full level ONNX
Runtime bakes in layouts for the instruction set). The file is stamped with the derivation's key,
kept as ``ZOO_HOME/optimized/<its own sha256>.onnx`` and recorded in ``derived/``; each worker
re-hashes it once and loads exactly the bytes it checked, never through a link or a second hard
link. A file that fails is quarantined with a warning and built again. Files are written to a
temporary name and renamed, so a reader never sees half a file; two workers that race both build
and one wins. Anything that goes wrong (read-only cache, a child that fails) falls back to the
normal in-process load, logged at debug level: this is a speed and memory optimisation, never a new
failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from zoo.errors import ZooError
from zoo.hub import derived
from zoo.hub.cache import ModelCache, hash_fd, machine_fingerprint
from zoo.hub.fsutil import lstat_regular, open_regular
from zoo.hub.onnx_files import stamp_entry
from zoo.log import get_logger

log = get_logger("optimized")

BUILDER = 2  # the version of how the file is made: a change here makes every old file unused
# 2: weights listed as graph inputs are taken out of the inputs first (the Ultra-Light detectors' exporter
#    did that): ONNX Runtime must treat them as overridable and cannot fold or fuse them (3-4x slower)
_CHILD_TIMEOUT = 600.0
S = TypeVar("S")


def derivation(sha256: str, label: str = "") -> derived.Derivation:
    """What the optimised file of model ``sha256`` on this machine derives from."""
    return derived.Derivation("optimized", {"source": sha256, "machine": machine_fingerprint(), "builder": BUILDER},
                              label)


def load(model: Path, sha256: str, cache: ModelCache, create: Callable[[str], S]) -> S | None:
    """``create(path)`` on the checked optimised file of ``model`` (sha ``sha256``) for this machine,
    built first when there is none; None when it cannot be had (the caller then loads ``model``)."""
    try:
        cache.check_layout()  # a cache whose folders are links: nothing is read or moved there
    except (ZooError, OSError) as exc:
        log.debug("no optimised file for %s: %s", sha256[:12], exc)
        return None
    d = derivation(sha256)
    built = False
    for _ in range(3):  # the recorded file; if it fails, one built now
        record = derived.read(cache, d)
        if record is None or record.output is None:
            if built or not build(model, d, cache):
                return None
            built = True
            continue
        path = cache.optimized_path(record.output.sha256)
        try:
            with derived.opened(path, record.output, d, single_link=True) as loadable:
                return create(loadable)
        except FileNotFoundError:
            derived.discard(cache, d, f"its file {path.name} is gone")
        except derived.Mismatch as exc:
            _quarantine(cache, path, d, str(exc))
        except Exception as exc:  # ONNX Runtime refuses a file that checked out: never serve it again
            _quarantine(cache, path, d, f"ONNX Runtime cannot load it ({type(exc).__name__}: {exc})")
    return None


def _quarantine(cache: ModelCache, path: Path, d: derived.Derivation, reason: str) -> None:
    try:
        cache.quarantine_entry(path, f"optimised file of {d.inputs['source'][:12]}: {reason}")
    except OSError as exc:
        log.warning("cannot quarantine %s (%s): %s", path, reason, exc.strerror or exc)
    derived.discard(cache, d, reason)


def build(model: Path, d: derived.Derivation, cache: ModelCache) -> bool:
    """Optimise ``model`` in a child process into the cache and record it; False when it cannot be done here."""
    try:
        cache.check_layout()
        cache.optimized_dir.mkdir(parents=True, exist_ok=True)
    except Exception as exc:  # e.g. ZOO_HOME is not a folder or one of its folders is a link
        log.debug("cannot optimise %s here: %s", d.inputs["source"][:12], exc)
        return False
    work = None
    try:
        # a private folder (0700): no other user can swap the file between the child and the stamp
        work = Path(tempfile.mkdtemp(prefix=f".{d.key[:16]}.", suffix=".tmp", dir=cache.optimized_dir))
        tmp = work / "model.onnx"
        done = subprocess.run(
            [sys.executable, "-m", "zoo.hub.optimized", str(model), str(tmp)],
            capture_output=True, text=True, timeout=_CHILD_TIMEOUT,
        )
        if done.returncode != 0 or lstat_regular(tmp) is None:
            log.debug("optimising %s failed (exit %s): %s", d.inputs["source"][:12], done.returncode,
                      done.stderr[-2000:])
            return False
        fd = open_regular(tmp, os.O_RDWR | os.O_APPEND, single_link=True)
        try:
            os.write(fd, stamp_entry(derived.STAMP_KEY, d.key))  # this derivation's key, in the file's metadata
            os.fsync(fd)
            os.fchmod(fd, 0o444)
            mine = os.fstat(fd)
            sha = hash_fd(fd)
        finally:
            os.close(fd)
        dest = cache.optimized_path(sha)
        os.replace(tmp, dest)
        placed = os.lstat(dest)
        if (placed.st_dev, placed.st_ino) != (mine.st_dev, mine.st_ino):
            cache.quarantine_entry(dest, "the optimised file was swapped for another entry before it was placed")
            return False
        derived.write(cache, d, output=derived.Output(sha, mine.st_size))
        log.debug("optimised %s for this machine into %s", d.inputs["source"][:12], dest)
        return True
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("cannot optimise %s here: %s", d.inputs["source"][:12], exc)
        return False
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _build(model: str, out: str) -> None:
    """Child process: let ONNX Runtime optimise ``model`` at the full level and save it to ``out``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = out
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # the "hardware specific" warning is why the derivation has the fingerprint
    ort.InferenceSession(_weights_as_constants(model), opts, providers=["CPUExecutionProvider"])


def _weights_as_constants(model: str) -> "str | bytes":
    """``model``, or its bytes without the graph inputs that name initializers. Old exporters list every
    weight as an input too; ONNX Runtime then keeps them overridable, so it neither folds constants nor
    fuses batch norms (the Ultra-Light face detectors run 3-4x slower that way). sparkzoo never feeds
    them, so the results are the same (``same_results`` checks it). A model with external data keeps its
    path: its data files are found beside it."""
    import onnx

    proto = onnx.load(model, load_external_data=False)
    weights = {i.name for i in proto.graph.initializer}
    if not any(i.name in weights for i in proto.graph.input):
        return model
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer):
        return model
    kept = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(kept)
    return proto.SerializeToString()


if __name__ == "__main__":
    _build(sys.argv[1], sys.argv[2])


def same_results(model: Path, optimised: str, *, seed: int = 0) -> str | None:
    """What differs between ``model`` and its optimised form on one seeded input (None: nothing).
    ONNX Runtime names the nodes it adds anew each time it optimises, so two honest files need not
    be the same bytes; what they compute must be the same."""
    import numpy as np
    import onnxruntime as ort

    def run(path: str, level) -> list:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(seed)
        feed = {}
        for i in sess.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else (2 if n == 0 else 224) for n, d in enumerate(i.shape)]
            if i.type == "tensor(float)":
                feed[i.name] = rng.random(shape, dtype=np.float32)
            else:
                return []  # text and integer inputs: no meaningful random input; the bytes were checked
        return [(o.name, v) for o, v in zip(sess.get_outputs(), sess.run(None, feed))]

    plain = run(str(model), ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    ready = run(optimised, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if [n for n, _ in plain] != [n for n, _ in ready]:
        return "it has other outputs than the model"
    for (name, a), (_, b) in zip(plain, ready):
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            return f"its output {name!r} differs from the model's"
    return None


def verify(cache: ModelCache, record: derived.Record, source: Path) -> tuple[str, str | None]:
    """(status, reason) of a recorded optimised file of this machine: it must check out (bytes,
    stamp, one link) and compute what the model at ``source`` computes; otherwise it is quarantined
    and built again."""
    d = record.derivation
    problem = None
    path = cache.optimized_path(record.output.sha256) if record.output is not None else None
    if path is None:
        problem = "records no file"
    else:
        try:
            with derived.opened(path, record.output, d, single_link=True) as loadable:
                problem = same_results(source, loadable)
        except FileNotFoundError:
            problem = f"its file {path.name} is missing"
        except derived.Mismatch as exc:
            problem = str(exc)
        except Exception as exc:  # ONNX Runtime cannot load it
            problem = f"ONNX Runtime cannot load it ({type(exc).__name__}: {exc})"
    if problem is None:
        return "ok", None
    if path is not None and os.path.lexists(path):
        _quarantine(cache, path, d, problem)
    else:
        derived.discard(cache, d, problem)
    fresh = derivation(d.inputs["source"], d.label)
    return ("rebuilt" if build(source, fresh, cache) else "quarantined"), f"the optimised file {problem}"
