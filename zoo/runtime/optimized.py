"""ONNX Runtime's optimised form of a model, built once per node in a child process and cached.

Why: creating a session at the full optimisation level makes ONNX Runtime hold the model
proto, its initializers and their re-laid-out (NCHWc, pre-packed) copies at once; for ResNet-50
that is about 280 MB on top of a 100 MB file, in every Python worker, for the whole life of the
worker (peak RSS never comes back down). Loading a model that is *already* optimised, with
optimisation switched off, needs about half of that and runs exactly as fast. So the first worker
on a node that needs a model runs the optimiser in a separate Python process (whose memory dies
with it), and every worker then loads the result.

The optimised file is specific to the machine: at the full level ONNX Runtime bakes in layouts
for the CPU's instruction set. The file name therefore carries a fingerprint of the ONNX Runtime
version, the architecture and the CPU's feature flags
(:func:`zoo.hub.cache.machine_fingerprint`):
``ZOO_HOME/optimized/<model sha256>-<fingerprint>.onnx``, and ``zoo cache prune`` removes the files
of other machines and runtimes. Files are written to a temporary name
and renamed, so a reader never sees half a file; two workers that race both build and one wins.
Anything that goes wrong (read-only cache, a child that fails) falls back to the normal in-process
load, logged at debug level: this is a speed and memory optimisation, never a new failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from zoo.hub.cache import ModelCache
from zoo.hub.fsutil import UnsafeEntry, lstat_regular, token
from zoo.log import get_logger

log = get_logger("optimized")

_CHILD_TIMEOUT = 600.0


def optimized(model: Path, sha256: str, cache: ModelCache) -> Path | None:
    """The optimised file of ``model`` (sha ``sha256``) for this machine, built now if missing; None
    when it cannot be had (the caller then loads ``model`` as it is)."""
    target = cache.optimized_path(sha256)
    try:
        if lstat_regular(target) is not None:
            return target
    except UnsafeEntry as exc:  # never load a planted link: remove it and build the file anew
        log.warning("removing %s: %s", target, exc.strerror)
        target.unlink(missing_ok=True)
    except OSError as exc:  # e.g. ZOO_HOME is not a folder: no optimised file here, load as it is
        log.debug("no optimised file for %s: %s", sha256[:12], exc)
        return None
    tmp = target.with_name(f".{target.name}.{token()}.tmp")  # unpredictable: nothing can be planted there
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "zoo.runtime.optimized", str(model), str(tmp)],
            capture_output=True, text=True, timeout=_CHILD_TIMEOUT,
        )
        if done.returncode != 0 or lstat_regular(tmp) is None:
            log.debug("optimising %s failed (exit %s): %s", sha256[:12], done.returncode, done.stderr[-2000:])
            return None
        os.replace(tmp, target)
        log.debug("optimised %s for this machine into %s", sha256[:12], target)
        return target
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("cannot optimise %s here: %s", sha256[:12], exc)
        return None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the directory itself could not be made
            pass


def _build(model: str, out: str) -> None:
    """Child process: let ONNX Runtime optimise ``model`` at the full level and save it to ``out``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = out
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # the "hardware specific" warning is why the file name has a fingerprint
    ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    _build(sys.argv[1], sys.argv[2])
