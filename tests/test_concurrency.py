"""Many real processes sharing one cache, and a download killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import MOBILENET_SHA

PULL = "import zoo, sys; print(zoo.pull(sys.argv[1]))"


def test_eight_processes_download_once_and_share_the_path(server, served_mobilenet, zoo_env, mobilenet_bytes):
    server.throttle[served_mobilenet] = 4_000_000  # ~1 s transfer, so all eight overlap
    procs = [
        subprocess.Popen([sys.executable, "-c", PULL, "mnv2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs]
    paths = {out.strip() for out, _ in outs}
    assert paths == {str(zoo_env / "blobs" / "sha256" / MOBILENET_SHA)}
    assert len(server.gets(served_mobilenet)) == 1
    assert server.full_downloads(served_mobilenet) == 1
    assert hashlib.sha256(open(paths.pop(), "rb").read()).hexdigest() == MOBILENET_SHA
    assert list((zoo_env / "tmp").iterdir()) == []
    assert [p.name for p in (zoo_env / "locks").iterdir()] == []


def test_sigkill_mid_transfer_leaves_no_corrupt_blob_and_next_pull_resumes(server, served_mobilenet, zoo_env):
    server.throttle[served_mobilenet] = 1_000_000
    proc = subprocess.Popen([sys.executable, "-c", PULL, "mnv2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    on_disk = lambda: sum(p.stat().st_size for p in (zoo_env / "tmp").glob("*.part"))  # noqa: E731
    while time.monotonic() < deadline:  # what the client wrote, not what the server sent (socket buffers hold the rest)
        if server.gets(served_mobilenet) and on_disk() >= 1_000_000:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the download never got going")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (zoo_env / "blobs" / "sha256" / MOBILENET_SHA).exists()
    assert (zoo_env / "locks" / f"{MOBILENET_SHA}.lock").exists()  # the dead owner's lock stays behind
    kept = on_disk()
    assert kept >= 1_000_000

    server.throttle.clear()
    import zoo

    path = zoo.pull("mnv2")  # breaks the dead owner's lock and adopts its partial file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MOBILENET_SHA
    resumed = server.gets(served_mobilenet)[-1]
    assert resumed.headers["range"] == f"bytes={kept}-" and resumed.status == 206
    assert list((zoo_env / "tmp").iterdir()) == []
