"""The cache on disk: verify and quarantine, locks, read-only use, pruning."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time


import zoo
from conftest import MOBILENET_SHA, entry, without_privileges
from zoo.hub.locks import BlobLock
from zoo.hub.cache import ModelCache


def test_verify_detects_a_flipped_byte_and_quarantines_it(server, served_mobilenet, zoo_env, mobilenet_bytes):
    path = zoo.pull("mnv2")
    assert [r.status for r in zoo.verify()] == ["ok"]
    os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)
    with open(path, "r+b") as fh:
        fh.seek(123_456)
        byte = fh.read(1)
        fh.seek(123_456)
        fh.write(bytes([byte[0] ^ 1]))
    (result,) = zoo.verify(["mnv2"])
    assert result.status == "quarantined" and result.names == ("mnv2",)
    assert not path.exists()
    (quarantined,) = (zoo_env / "quarantine").iterdir()
    assert quarantined.name.startswith(MOBILENET_SHA)
    assert MOBILENET_SHA not in json.loads((zoo_env / "index.json").read_text())["blobs"]
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes  # fetched again, never the bad copy
    assert len(server.gets(served_mobilenet)) == 2


def test_a_corrupt_blob_is_never_served_even_without_verify(server, served_mobilenet, zoo_env, mobilenet_bytes):
    path = zoo.pull("mnv2")
    os.chmod(path, 0o644)
    path.write_bytes(b"\0" + mobilenet_bytes[1:])  # same size, new mtime: the record no longer matches
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    assert len(list((zoo_env / "quarantine").iterdir())) == 1


def test_published_blobs_are_read_only(server, served_mobilenet, zoo_env):
    mode = zoo.pull("mnv2").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_read_only_cache_serves_hits_and_explains_misses(server, served_mobilenet, zoo_env, write_registry, mobilenet_bytes):
    path = zoo.pull("mnv2")
    write_registry(entry("other", mobilenet_bytes[:1000], [server.add("/o.onnx", mobilenet_bytes[:1000])]))
    dirs = [zoo_env, *(d for d in zoo_env.rglob("*") if d.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    code = "import sys, zoo\ntry:\n    print(zoo.pull(sys.argv[1]))\nexcept zoo.errors.ZooError as e:\n    print(type(e).__name__, e)"
    try:
        run = lambda name: subprocess.run(
            [*without_privileges(), sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60
        )
        hit = run("mnv2")
        assert hit.stdout.strip() == str(path), hit.stderr
        miss = run("other")
        assert miss.stdout.startswith("CacheReadOnlyError") and str(zoo_env) in miss.stdout, miss.stderr
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert len(server.gets(served_mobilenet)) == 1 and server.gets("/o.onnx") == []


def test_a_lock_held_by_a_dead_process_is_broken(tmp_path):
    lock_path = tmp_path / "x.lock"
    dead = {"host": socket.gethostname(), "pid": 2**22 + 12345, "started": time.time(), "token": "t"}
    lock_path.write_text(json.dumps(dead))
    lock = BlobLock(lock_path, timeout=5, stale=300)
    assert lock.acquire() is True
    assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_path.exists()


def test_a_live_lock_is_waited_on_then_given_up_after_the_timeout(tmp_path, caplog):
    holder = BlobLock(tmp_path / "x.lock", timeout=1, stale=300)
    assert holder.acquire()
    waiter = BlobLock(tmp_path / "x.lock", timeout=0.3, stale=300)
    started = time.monotonic()
    with caplog.at_level("INFO", logger="zoo"):
        assert waiter.acquire() is False
    assert time.monotonic() - started >= 0.3
    assert f"pid {os.getpid()}" in caplog.text  # says whom it waited on
    holder.release()
    assert waiter.acquire() is True
    waiter.release()


def test_a_lock_whose_heartbeat_stopped_on_another_host_is_stale(tmp_path):
    lock_path = tmp_path / "x.lock"
    lock_path.write_text(json.dumps({"host": "other-node", "pid": 1, "started": 0, "token": "t"}))
    os.utime(lock_path, (time.time() - 10, time.time() - 10))
    assert BlobLock(lock_path, timeout=0, stale=60).acquire() is False  # fresh enough: respected
    assert BlobLock(lock_path, timeout=1, stale=5).acquire() is True  # older than stale: broken


def test_the_holder_keeps_its_lock_fresh(tmp_path):
    lock = BlobLock(tmp_path / "x.lock", timeout=1, stale=0.4)
    lock.acquire()
    try:
        os.utime(lock.path, (0, 0))
        time.sleep(0.3)
        assert time.time() - lock.path.stat().st_mtime < 1
    finally:
        lock.release()


def test_prune_removes_orphans_but_not_live_downloads(zoo_env):
    cache = ModelCache(zoo_env)
    live = cache.open_slot("a" * 64)
    live.path.write_bytes(b"x" * 100)
    orphan = cache.open_slot("b" * 64)
    orphan.path.write_bytes(b"y" * 50)
    meta = json.loads(orphan.meta_path.read_text())
    meta["pid"] = 2**22 + 999
    orphan.meta_path.write_text(json.dumps(meta))
    cache.quarantine_dir.mkdir(parents=True)
    (cache.quarantine_dir / ("c" * 64 + ".x")).write_bytes(b"z" * 10)
    meta_size = orphan.meta_path.stat().st_size
    report = cache.prune(stale=300)
    assert (report.temp_files, report.quarantined, report.bytes_freed) == (1, 1, 50 + meta_size + 10)
    assert live.path.exists() and not orphan.path.exists() and not orphan.meta_path.exists()
    assert list(cache.quarantine_dir.iterdir()) == []


def test_remove_deletes_blob_and_names(server, served_mobilenet, zoo_env):
    path = zoo.pull("mnv2")
    assert zoo.remove("mnv2") is True
    assert not path.exists()
    assert json.loads((zoo_env / "index.json").read_text())["names"] == {}
    assert zoo.remove("mnv2") is False
