"""Shared fixtures: an isolated ZOO_HOME per test, a loopback HTTP server, the shared real model."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("ZOO_KIT_FUZZ_EXAMPLES", "6")  # the kit's default is 10; keep the suite inside its budget
from _http import LoopbackServer  # noqa: E402

from zoo.testing import prefer_jvm_options  # noqa: E402

# Every Spark driver the tests start (this process's session, the CLI, examples and benchmarks run as
# subprocesses) compiles with C1 only: a test's JVM lives seconds to minutes, and the default
# tiered JIT spent half of such a JVM's CPU on C2 compilations (tests/_cluster.py: the cluster's JVMs)
prefer_jvm_options()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MOBILENET = SHARED / "models" / "mobilenetv2-12-int8.onnx"
MOBILENET_SHA = "83530ad811bc31d2b60a5599a21265a5057608c9b044b4ee758cc22f2309f54f"


# Modules whose tests share an expensive module fixture: one pytest-xdist worker runs each whole
# (a standalone cluster; one Spark Connect server start). pytest-xdist's own `xdist_group` mark
# cannot do this with pytest 9.2 (it renames nodeids through an attribute pytest no longer reads).
ONE_WORKER_MODULES = ("tests/test_cluster.py", "tests/test_connect.py")


def pytest_xdist_make_scheduler(config, log):
    """Tests handed out one at a time to whichever worker is free, except ONE_WORKER_MODULES, each
    handed out whole (first: pytest-xdist starts the scopes with the most tests first)."""
    from xdist.scheduler import LoadScopeScheduling

    class OneTestOrOneModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return OneTestOrOneModule(config, log)


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` first (stable order otherwise): the scheduler hands tests out in this
    order, so the long ones start at once instead of one of them finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def missing(reason: str) -> None:
    """A prerequisite is missing: fail under CI (where it must exist), skip with the reason elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: this must not be skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mobilenet_bytes() -> bytes:
    if not MOBILENET.exists():
        missing(f"{MOBILENET} is absent: the shared test material is not beside the checkout")
    data = MOBILENET.read_bytes()
    assert hashlib.sha256(data).hexdigest() == MOBILENET_SHA
    return data


def zoo_cmd(*args: str, env_extra: dict | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("zoo")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "zoo.cli.main"]
    env = dict(os.environ, **(env_extra or {}))
    result = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)
    if check is not None:
        assert result.returncode == check, f"exit {result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


def without_privileges() -> list[str]:
    """As root, drop every capability so file permissions apply (the cache must look read-only)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        missing("running as root without setpriv: cannot make the cache read-only")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


@pytest.fixture
def zoo_env(tmp_path, monkeypatch) -> Path:
    """A fresh ZOO_HOME and a clean ZOO_* environment (fast retries, no progress bars)."""
    for key in list(os.environ):
        if key.startswith(("ZOO_", "HF_")):
            monkeypatch.delenv(key)
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("ZOO_ALLOW_HTTP", "127.0.0.1")
    monkeypatch.setenv("ZOO_RETRIES", "1")
    monkeypatch.setenv("ZOO_BACKOFF", "0.01")
    monkeypatch.setenv("ZOO_TIMEOUT", "5")
    monkeypatch.setenv("ZOO_PROGRESS", "0")
    monkeypatch.setenv("ZOO_HF_ENDPOINT", "http://127.0.0.1:9")  # never the real hub
    return home


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small, real tmpfs (a full disk for real ENOSPC); needs root, as CI has."""

    def mount(name: str, size: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            missing(f"cannot mount a tmpfs here ({done.stderr.strip()}); run as root")
        mounted.append(target)
        return target

    mounted: list[Path] = []
    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="session")
def tls_ca():
    """A throw-away certificate authority (trustme) and a certificate for 127.0.0.1 signed by it."""
    import trustme

    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1")


@pytest.fixture
def https_server(tls_ca, tmp_path, monkeypatch):
    """A loopback server speaking https with a certificate the client trusts (through SSL_CERT_FILE,
    which Python's default SSL context reads): the real TLS stack, no verification switched off."""
    import ssl

    ca, cert = tls_ca
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    srv = LoopbackServer(tls=context)
    yield srv
    srv.close()


def entry(name: str, data: bytes, sources: list[str], **extra) -> dict:
    """A valid registry entry for ``data`` served from ``sources``."""
    out = {
        "name": name,
        "description": f"test model {name}",
        "license": "Apache-2.0",
        "task": "image-classification",
        "format": "onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "sources": sources,
        "input": {"name": "input", "layout": "NCHW", "shape": [None, 3, 224, 224], "dtype": "float32"},
        "preprocess": None,
        "labels": "imagenet",
    }
    out.update(extra)
    return out


@pytest.fixture
def write_registry(tmp_path, monkeypatch):
    """Write a registry of the given entries and put it on ZOO_REGISTRY; returns its path."""
    count = [0]

    def write(*entries: dict, env: bool = True) -> Path:
        count[0] += 1
        path = tmp_path / f"registry-{count[0]}.json"
        path.write_text(json.dumps({"schema_version": 1, "models": list(entries)}))
        if env:
            current = os.environ.get("ZOO_REGISTRY")
            monkeypatch.setenv("ZOO_REGISTRY", f"{current}{os.pathsep}{path}" if current else str(path))
        return path

    return write


@pytest.fixture
def served_mobilenet(server, zoo_env, write_registry, mobilenet_bytes):
    """The real MobileNet v2 int8 served at /models/mnv2.onnx and registered as 'mnv2'."""
    url = server.add("/models/mnv2.onnx", mobilenet_bytes)
    write_registry(entry("mnv2", mobilenet_bytes, [url], aliases=["mobile"]))
    return "/models/mnv2.onnx"


@pytest.fixture(scope="session")
def spark(zoo_spark):
    """The one local SparkSession of the test run (from the zoo pytest plugin)."""
    return zoo_spark


# -- the shared MobileNet v2 int8 and the shared photos ------------------------------------------------
PHOTOS = SHARED / "data" / "imagenet-sample"


def reference_preprocess(path: Path):
    """The published ImageNet preprocessing done independently of sparkzoo, as torchvision's
    ``Resize(256)`` + ``CenterCrop(224)`` do it on Pillow: RGB, antialiased bilinear, the shorter side
    256 and the longer ``int(256 * long / short)``, crop offsets ``int(round((size - 224) / 2))``,
    ImageNet mean/std, CHW."""
    import numpy as np
    from PIL import Image

    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    im = Image.open(path).convert("RGB")
    w, h = im.size
    im = im.resize((256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256), Image.BILINEAR)
    left, top = int(round((im.size[0] - 224) / 2.0)), int(round((im.size[1] - 224) / 2.0))
    return ((np.asarray(im.crop((left, top, left + 224, top + 224)), np.float32) / 255 - mean) / std).transpose(2, 0, 1)


@pytest.fixture(scope="session")
def labels() -> dict[str, int]:
    if not (PHOTOS / "labels.csv").exists():
        missing(f"{PHOTOS} is absent: the shared photos are not beside the checkout")
    with open(PHOTOS / "labels.csv") as fh:
        return {row["file"]: int(row["class_index"]) for row in csv.DictReader(fh)}


@pytest.fixture(scope="session")
def reference_top1(labels, mobilenet_bytes) -> float:
    """Top-1 of the shared MobileNet v2 int8 on the shared photos with the published preprocessing done
    independently of sparkzoo (Pillow: RGB, bilinear shorter side 256, centre crop 224, ImageNet
    mean/std). The model's published ImageNet top-1 is 68.3%; a 100-photo sample lands within a few
    points of it (0.82 on the current sample), so the tests compare with this figure, not a constant
    tuned to one sample."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(mobilenet_bytes, providers=["CPUExecutionProvider"])
    hits = [int(np.argmax(sess.run(None, {"input": reference_preprocess(PHOTOS / name)[None]})[0])) == label
            for name, label in labels.items()]
    top1 = float(np.mean(hits))
    assert top1 >= 0.55, f"the reference itself scores {top1}: is the shared sample labelled as documented?"
    return top1


@pytest.fixture
def mnv2(zoo_env, write_registry, mobilenet_bytes, labels):
    """The real MobileNet v2 int8 registered from ../shared under a local name, with its published preprocessing."""
    from zoo.hub.presets import IMAGENET

    write_registry(entry("mnv2-local", mobilenet_bytes, [MOBILENET.as_uri()], preprocess=IMAGENET))
    return "mnv2-local"
