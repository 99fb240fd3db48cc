"""The last unclear errors and hostile corners of issue 34, each through the real CLI or the real
cache on a real file system: planted locks, entries without an input, unbounded registry fields,
names the reference parser reads as paths, files that are not model files, and what a killed
incremental run leaves behind."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import zoo
from conftest import MOBILENET, MOBILENET_SHA, entry, zoo_cmd
from zoo.errors import InvalidModelError, ModelNotFoundError, RegistryError
from zoo.hub.cache import ModelCache


# -- 3. a planted lock is never waited on ---------------------------------------------------------------
def _plant(lock, how: str, outside) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    if how == "symlink-to-nothing":
        os.symlink(outside / "nothing", lock)
    elif how == "symlink-to-a-file":
        os.symlink(outside, lock)
    elif how == "folder":
        lock.mkdir()
        (lock / "inside").write_text("x")
    elif how == "fifo":
        os.mkfifo(lock)
    elif how == "hard-link":
        os.link(outside, lock)
    elif how == "garbage":  # a file naming no owner, older than an owner takes to write its record
        lock.write_bytes(b"\x00garbage")
        os.utime(lock, (time.time() - 30, time.time() - 30))


@pytest.mark.parametrize("how", ["symlink-to-nothing", "symlink-to-a-file", "folder", "fifo", "hard-link", "garbage"])
def test_a_planted_lock_is_set_aside_at_once(zoo_env, tmp_path, how):
    outside = tmp_path / "victim.txt"
    outside.write_text("untouched")
    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    lock = cache.locks_dir / f"{MOBILENET_SHA}.lock"
    _plant(lock, how, outside)
    held = {}
    worker = threading.Thread(target=lambda: held.update(got=cache.lock(MOBILENET_SHA, timeout=300, stale=300).acquire()))
    worker.start()
    worker.join(60)  # ZOO_LOCK_STALE here is 300 s: only setting the entry aside lets it through in time
    assert not worker.is_alive() and held["got"] is True
    assert lock.is_file() and not lock.is_symlink() and os.stat(lock).st_nlink == 1
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert outside.read_text() == "untouched"
    if how != "garbage":
        assert any((zoo_env / "quarantine").iterdir()), "a planted entry goes to quarantine/"


def test_a_fresh_lock_with_no_owner_yet_is_still_respected(zoo_env):
    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    lock = cache.locks_dir / f"{MOBILENET_SHA}.lock"
    lock.write_bytes(b"")  # its maker has just created it and not yet written its record
    assert cache.lock(MOBILENET_SHA, timeout=0.3, stale=300).acquire() is False


def test_a_pull_goes_through_a_planted_lock_link(served_mobilenet, zoo_env, tmp_path):
    lock = zoo_env / "locks" / f"{MOBILENET_SHA}.lock"
    lock.parent.mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", lock)
    done = zoo_cmd("pull", "mnv2", env_extra={"ZOO_LOCK_STALE": "600", "ZOO_LOCK_TIMEOUT": "600"})
    assert done.stdout.strip().endswith(MOBILENET_SHA) and "quarantined" in done.stderr
    assert not (tmp_path / "elsewhere").exists()


# -- 4. zoo info on every built-in entry ---------------------------------------------------------------
def test_zoo_info_prints_every_built_in_entry(zoo_env, capsys):
    from zoo.cli.main import main

    names = [e.name for e in zoo.models()]
    assert len(names) >= 184 and "bertsquad-10" in names
    for name in names:  # in-process: one `zoo info` per entry through the CLI's own code
        assert main(["info", name]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith(f"name         {name}\n"), name
    info = zoo_cmd("info", "bertsquad-10")  # and once as a user runs it: an entry without an image input
    assert info.stderr == "" and "\ninput " not in info.stdout and "\npreprocess   null" in info.stdout


# -- 5, 6. bounded registry fields, bounded echoes ---------------------------------------------------------
def _registry_with(tmp_path, **fields) -> dict:
    data = MOBILENET.read_bytes() if MOBILENET.exists() else b"x"
    return {"ZOO_REGISTRY": str(_write(tmp_path, {**entry("huge", data, [MOBILENET.as_uri()]), **fields}))}


def _write(tmp_path, model: dict):
    path = tmp_path / f"registry-{len(list(tmp_path.glob('registry-*')))}.json"
    path.write_text(json.dumps({"schema_version": 1, "models": [model]}))
    return path


@pytest.mark.parametrize("size", [10**30, 2**63, 2**40 + 1])
def test_a_registry_size_beyond_any_file_is_refused(zoo_env, tmp_path, size):
    done = zoo_cmd("pull", "huge", env_extra=_registry_with(tmp_path, bytes=size), check=3)
    assert "'huge'" in done.stderr and "bytes" in done.stderr and "free space" not in done.stderr


@pytest.mark.parametrize("field,value,command", [
    ("name", "n" * 100_000, ["ls"]),
    ("sources", ["https://example.invalid/m.onnx"] * 100_000, ["ls"]),
    ("description", "d" * 10_000_000, ["ls"]),
    ("aliases", [f"a{i}" for i in range(10_000)], ["ls"]),
    ("license", "l" * 1_000_000, ["info", "huge"]),
])
def test_hostile_field_sizes_are_refused_and_never_echoed_whole(zoo_env, tmp_path, field, value, command):
    done = zoo_cmd(*command, env_extra=_registry_with(tmp_path, **{field: value}), check=3)
    assert len(done.stderr) < 5000 and len(done.stdout) < 5000
    assert field in done.stderr


def test_a_long_name_on_the_command_line_is_echoed_short(zoo_env):
    done = zoo_cmd("pull", "x" * 100_000, check=None)
    assert done.returncode in (3, 4) and len(done.stderr) < 2000


def test_zoo_ls_shows_the_start_of_a_long_description(zoo_env, tmp_path):
    long = "word " * 300  # within the schema's 2,000 characters
    out = zoo_cmd("ls", "--search", "huge", env_extra=_registry_with(tmp_path, description=long)).stdout
    assert max(len(line) for line in out.splitlines()) < 200
    full = json.loads(zoo_cmd("ls", "--json", "--search", "huge", env_extra=_registry_with(tmp_path, description=long)).stdout)
    assert full[0]["description"] == long


# -- 8, 9. names that read as paths; files that are not model files --------------------------------------
@pytest.mark.parametrize("name", ["model.onnx", "a" * 64, "net/v2", "~mine", "file:x", "sha256:" + "a" * 64, "x..y"])
def test_zoo_add_refuses_a_name_the_reference_parser_reads_otherwise(zoo_env, name):
    done = zoo_cmd("add", str(MOBILENET), "--name", name, check=3)
    assert "invalid model name" in done.stderr
    assert not (zoo_env / "registry.json").exists(), "nothing was written"


def test_a_registry_entry_named_like_a_path_is_refused(zoo_env, tmp_path, mobilenet_bytes):
    done = zoo_cmd("ls", env_extra={"ZOO_REGISTRY": str(_write(tmp_path, entry("m.onnx", mobilenet_bytes, [MOBILENET.as_uri()])))},
                   check=3)
    assert "'m.onnx'" in done.stderr and "file path" in done.stderr


@pytest.mark.parametrize("what,expected,code", [
    ("empty", "an empty file", 9), ("directory", "a directory", 9), ("fifo", "a FIFO", 9),
    ("device", "a character device", 9), ("missing", "no such model file", 4),
])
def test_zoo_add_says_what_the_file_is(zoo_env, tmp_path, what, expected, code):
    path = tmp_path / "thing.onnx"
    if what == "empty":
        path.write_bytes(b"")
    elif what == "directory":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "device":
        path = "/dev/zero"
    done = zoo_cmd("add", str(path), "--name", "thing", check=code)
    assert expected in done.stderr and str(path) in done.stderr


def test_a_model_path_that_is_not_a_file_is_named_in_the_api_too(zoo_env, tmp_path):
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(InvalidModelError, match="is a directory"):
        zoo.cuts(str(tmp_path / "d.onnx"))
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        zoo.cuts(str(tmp_path / "none.onnx"))
    with pytest.raises(RegistryError, match="file path"):
        zoo.add(MOBILENET, name="x.onnx")


def test_a_link_planted_as_the_index_lock_is_set_aside_too(zoo_env, tmp_path):
    """Another lock of the same class as the blob locks: the cache index's own (every pull writes it)."""
    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    os.symlink(tmp_path / "elsewhere", cache.locks_dir / "index.lock")
    cache.remember_name("planted-lock-test", MOBILENET_SHA)
    assert cache.names()["planted-lock-test"] == MOBILENET_SHA, "the index was written under a real lock"
    assert not (cache.locks_dir / "index.lock").is_symlink() and not (tmp_path / "elsewhere").exists()
