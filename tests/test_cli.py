"""Every `zoo` command, run as a real subprocess through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import MOBILENET, MOBILENET_SHA, zoo_cmd
from zoo.runtime import sessions


@pytest.mark.parametrize(
    "command", ["pull", "ls", "info", "verify", "rm", "cache", "add", "mirror", "doctor", "stages", "check",
                "cluster-env", "featurize", "check-model", "predict"]
)
def test_every_command_has_help_and_json(zoo_env, command):
    out = zoo_cmd(command, "--help").stdout
    assert f"usage: zoo {command}" in out and "--json" in out


def test_pull_ls_info_verify_rm(served_mobilenet, server, zoo_env, mobilenet_bytes):
    path = zoo_cmd("pull", "mnv2").stdout.strip()
    assert Path(path).read_bytes() == mobilenet_bytes
    assert json.loads(zoo_cmd("pull", "--json", "mobile").stdout) == {"mobile": path}

    listing = json.loads(zoo_cmd("ls", "--json").stdout)
    names = {m["name"]: m for m in listing}
    assert names["mnv2"]["cached"] is True and names["resnet50-v1-12"]["cached"] is False
    assert [m["name"] for m in json.loads(zoo_cmd("ls", "--cached", "--json").stdout)] == ["mnv2"]
    assert "resnet50-v1-12" in zoo_cmd("ls").stdout

    info = json.loads(zoo_cmd("info", "--json", "mnv2").stdout)
    assert info["sha256"] == MOBILENET_SHA and info["path"] == path and info["aliases"] == ["mobile"]
    assert "sha256       " + MOBILENET_SHA in zoo_cmd("info", "mnv2").stdout

    assert json.loads(zoo_cmd("verify", "--json").stdout)[0]["status"] == "ok"
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"\0")
    bad = zoo_cmd("verify", "mnv2", check=7)
    assert bad.stdout.startswith("quarantined")

    zoo_cmd("pull", "-q", "mnv2")
    assert "removed mnv2" in zoo_cmd("rm", "mnv2").stdout
    assert json.loads(zoo_cmd("rm", "--json", "mnv2").stdout) == [{"name": "mnv2", "removed": False}]
    assert zoo_cmd("verify", "--json", "mnv2", check=4).stdout.count('"missing"') == 1
    assert len(server.gets(served_mobilenet)) == 2


def test_errors_exit_with_documented_codes_and_clear_messages(zoo_env, served_mobilenet):
    missing = zoo_cmd("pull", "no-such-model", check=4)
    assert "unknown model 'no-such-model'" in missing.stderr and "Traceback" not in missing.stderr
    offline = zoo_cmd("pull", "mnv2", env_extra={"ZOO_OFFLINE": "1"}, check=5)
    assert "zoo pull mnv2" in offline.stderr
    bad_env = zoo_cmd("ls", env_extra={"ZOO_TIMEOUT": "soon"}, check=2)
    assert "ZOO_TIMEOUT='soon' is not a number" in bad_env.stderr
    assert zoo_cmd("frobnicate", check=2).stderr.startswith("usage: zoo")


def test_cache_dir_size_prune(served_mobilenet, zoo_env, mobilenet_bytes):
    assert zoo_cmd("cache", "dir").stdout.strip() == str(zoo_env)
    assert json.loads(zoo_cmd("cache", "dir", "--json").stdout) == {"dir": str(zoo_env)}
    zoo_cmd("pull", "mnv2")
    orphan = zoo_env / "tmp" / f"{'e' * 64}.host.1.x.part"
    orphan.write_bytes(b"z" * 1000)
    os.utime(orphan, (0, 0))
    from zoo.hub.cache import ModelCache

    from zoo.hub import derived, optimized

    (zoo_env / "optimized").mkdir()
    ours = ModelCache(zoo_env).optimized_path("a" * 64)  # recorded for this machine: kept
    ours.write_bytes(b"o" * 300)
    derived.write(ModelCache(zoo_env), optimized.derivation(MOBILENET_SHA), output=derived.Output("a" * 64, 300))
    foreign = zoo_env / "optimized" / f"{MOBILENET_SHA}-0123456789abcdef.onnx"  # an older sparkzoo's: pruned
    foreign.write_bytes(b"f" * 200)
    sizes = json.loads(zoo_cmd("cache", "size", "--json").stdout)
    assert sizes["blobs"] == len(mobilenet_bytes) and sizes["tmp"] == 1000 and sizes["optimized"] == 500
    report = json.loads(zoo_cmd("cache", "prune", "--json").stdout)
    assert report["temp_files"] == 1 and report["foreign_optimized"] == 1 and report["bytes_freed"] == 1200
    assert not orphan.exists() and not foreign.exists() and ours.exists()


def test_add_then_mirror_then_pull_from_the_mirror_offline_of_upstream(zoo_env, tmp_path, mobilenet_bytes):
    original = tmp_path / "upload" / "m.onnx"
    original.parent.mkdir()
    shutil.copyfile(MOBILENET, original)
    added = json.loads(zoo_cmd("add", str(original), "--name", "local-mnv2", "--alias", "lm", "--json").stdout)
    assert added["sha256"] == MOBILENET_SHA and added["preprocess"]["std"] == [0.229, 0.224, 0.225]

    mirror = tmp_path / "mirror"
    assert json.loads(zoo_cmd("mirror", str(mirror), "--json").stdout) == ["local-mnv2"]
    assert (mirror / "sha256" / MOBILENET_SHA).read_bytes() == mobilenet_bytes
    exported = json.loads((mirror / "registry.json").read_text())
    assert [m["name"] for m in exported["models"]] == ["local-mnv2"]

    # an "air-gapped" node: empty cache, no user registry, only the mirror folder
    other = {"ZOO_HOME": str(tmp_path / "node2"), "ZOO_MIRRORS": mirror.as_uri(),
             "ZOO_REGISTRY": str(mirror / "registry.json")}
    original.unlink()  # the only remaining copy is the mirror's
    path = zoo_cmd("pull", "lm", env_extra=other).stdout.strip()
    assert path == str(tmp_path / "node2" / "blobs" / "sha256" / MOBILENET_SHA)


def test_doctor_reports_cache_locking_and_mirrors(zoo_env, server, monkeypatch):
    server.add("/mirror/", b"index")
    env = {"ZOO_MIRRORS": f"{server.url('/mirror')} http://127.0.0.1:9/dead", "ZOO_TIMEOUT": "1"}
    result = zoo_cmd("doctor", "--json", env_extra=env, check=1)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["writable"]["ok"] and checks["locking"]["ok"]
    assert checks["cache dir"]["detail"] == str(zoo_env)
    assert checks["file system"]["detail"] not in ("", "unknown")
    assert checks[f"mirror {server.url('/mirror')}"]["ok"] is True
    assert checks["mirror http://127.0.0.1:9/dead"]["ok"] is False
    import onnxruntime as ort

    runtime = checks["onnxruntime"]
    assert runtime["ok"] and runtime["detail"].startswith(f"{ort.__version__}; providers: ")
    assert "CPUExecutionProvider" in runtime["detail"]
    listed_gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers())
    if listed_gpu and not sessions.cuda_available():  # onnxruntime-gpu on a machine without a GPU (CI)
        assert "listed but not usable here, no GPU: " in runtime["detail"], runtime
    text = zoo_cmd("doctor", env_extra=env, check=1).stdout
    assert "BAD  mirror http://127.0.0.1:9/dead" in text


@pytest.mark.slow
def test_zoo_check_runs_the_kit_on_named_stages():
    from zoo.testing import CHECKS

    # the kit itself is tested on every stage in test_kit.py; here the command: one stage, every check
    result = zoo_cmd("check", "select", "--fuzz-examples", "2", "--json")
    report = json.loads(result.stdout)
    assert report["failed"] == [] and set(report["stages"]) == {"select"}
    assert {r["check"] for r in report["stages"]["select"]} == set(CHECKS) - {"estimator"}
    assert all(r["ok"] and r["seconds"] >= 0 for r in report["stages"]["select"])
    assert "SQLQueryContextLogger" not in result.stderr
    # --checks picks checks (the kit's API is tested on it in test_kit.py); here only what needs no Spark
    wrong = zoo_cmd("check", "drop", "--checks", "speed", check=10)
    assert "unknown check 'speed'" in wrong.stderr
    unknown = zoo_cmd("check", "no_such_stage", check=10)
    assert "unknown stage 'no_such_stage'" in unknown.stderr


@pytest.mark.slow
def test_check_model_on_a_node_without_sparkzoo_is_a_clear_error(tmp_path):
    """The executors' Python is a bare virtual environment (no sparkzoo, no pyarrow): the command says
    which Python lacks what and how to ship one, instead of a Spark traceback."""
    import subprocess
    import sys as _sys

    from zoo.testing import tiny

    subprocess.run([_sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny.tiny_model_bytes())
    env = {"ZOO_HOME": str(tmp_path / "home")}
    done = zoo_cmd("check-model", str(model), "--cut", "0", "--preprocess", "none", "--master", "local[1]", "--conf",
                   f"spark.pyspark.python={tmp_path / 'bare' / 'bin' / 'python'}", "--conf", "spark.task.maxFailures=1",
                   env_extra=env, check=None)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("zoo: error: the executors' Python (") and "cannot import 'pluggy'" in last
    assert "docs/cluster.md" in last
