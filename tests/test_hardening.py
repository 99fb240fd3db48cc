"""The cache and the downloader under attack and under faults (issue 13): hostile files in ZOO_HOME,
downgrading redirects, external data, full disks, broken registries, stalls, Retry-After, offline
mirrors, read-only verification and closed pipes. Real loopback servers (https through trustme),
real file systems (a tmpfs for a full disk), real processes; no mocks."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import zoo
from _http import LoopbackServer
from conftest import MOBILENET_SHA, entry, without_privileges, zoo_cmd
from zoo.hub.sources import origin
from zoo.hub.cache import ModelCache
from zoo.errors import (
    ChecksumError,
    DownloadError,
    InsufficientSpaceError,
    InvalidModelError,
    OfflineError,
    RegistryError,
)

DEAD_PID = 2**22 + 4321  # above Linux's default pid_max, so never a live process


def _plant_partial(home: Path, sha: str, part: Path | bytes, *, url: str | None, validator: str | None) -> Path:
    """An orphaned partial download as a crashed process on this host would leave it: a ``.part``
    (bytes, or a symlink to ``part`` when it is a Path) and a ``.json`` record naming a dead owner."""
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stem = tmp / f"{sha}.{socket.gethostname()}.{DEAD_PID}.deadbeef"
    if isinstance(part, Path):
        os.symlink(part, stem.with_suffix(".part"))
    else:
        stem.with_suffix(".part").write_bytes(part)
    record = {"host": socket.gethostname(), "pid": DEAD_PID, "started": time.time() - 3600, "url": url,
              "validator": validator, "abandoned": True}
    stem.with_suffix(".json").write_text(json.dumps(record))
    return stem.with_suffix(".part")


# -- 1. nothing in ZOO_HOME is followed out of it -------------------------------------------------

def test_a_symlink_planted_as_a_partial_download_is_never_written_through(
        server, served_mobilenet, zoo_env, mobilenet_bytes, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data outside the cache\n")
    victim.chmod(0o644)
    _plant_partial(zoo_env, MOBILENET_SHA, victim, url=server.url(served_mobilenet),
                   validator=server.etags[served_mobilenet])
    path = zoo.pull("mnv2")
    assert victim.read_bytes() == b"precious data outside the cache\n"  # not truncated, not rewritten
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # not chmod-ed to 0444
    assert not path.is_symlink() and path.read_bytes() == mobilenet_bytes
    quarantined = list((zoo_env / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].is_symlink()  # the planted link, moved aside
    assert [r.headers.get("range") for r in server.gets(served_mobilenet)] == [None]  # one clean download


def test_a_hard_link_or_fifo_planted_as_a_partial_is_not_adopted(server, served_mobilenet, zoo_env, mobilenet_bytes, tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(mobilenet_bytes[:1000])  # looks like a good start of the file
    part = _plant_partial(zoo_env, MOBILENET_SHA, b"", url=server.url(served_mobilenet),
                          validator=server.etags[served_mobilenet])
    part.unlink()
    os.link(victim, part)  # same bytes, but a second name for a file outside the cache
    fifo_meta = zoo_env / "tmp" / f"{MOBILENET_SHA}.other.1.x.json"
    os.mkfifo(fifo_meta)  # a reader that opened this would hang
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    assert victim.read_bytes() == mobilenet_bytes[:1000]
    assert stat.S_IMODE(victim.stat().st_mode) != 0o444
    assert not os.path.lexists(fifo_meta)  # moved to quarantine, with the hard link
    assert len(list((zoo_env / "quarantine").iterdir())) == 2


def test_a_symlinked_blob_is_not_served_and_verify_reports_it(server, served_mobilenet, zoo_env, mobilenet_bytes, tmp_path):
    blob = zoo.pull("mnv2")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(mobilenet_bytes)  # even the right bytes: the cache never serves through a link
    blob.unlink()
    os.symlink(outside, blob)
    (result,) = zoo.verify()
    assert result.status == "quarantined" and "symbolic link" in result.reason
    os.symlink(outside, blob)
    served = zoo.pull("mnv2")
    assert not served.is_symlink() and served.read_bytes() == mobilenet_bytes
    assert len(server.gets(served_mobilenet)) == 2  # downloaded again instead of following the link
    assert outside.read_bytes() == mobilenet_bytes


def test_a_cache_folder_that_is_a_symlink_is_refused(server, served_mobilenet, zoo_env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    zoo_env.mkdir(parents=True, exist_ok=True)
    os.symlink(elsewhere, zoo_env / "tmp")
    with pytest.raises(zoo.errors.CacheError, match=r"tmp is a symbolic link.*never follows links"):
        zoo.pull("mnv2")
    assert list(elsewhere.iterdir()) == []


# -- 2. no downgrade, no credentials in clear ------------------------------------------------------

def test_an_https_url_is_never_redirected_to_http_even_for_allowed_hosts(
        https_server, server, zoo_env, write_registry, mobilenet_bytes):
    plain = server.add("/m.onnx", mobilenet_bytes)
    https_server.add("/m.onnx", mobilenet_bytes)
    https_server.fault("/m.onnx", redirect=plain)
    write_registry(entry("tls", mobilenet_bytes, [https_server.url("/m.onnx")]))
    assert "127.0.0.1" in os.environ["ZOO_ALLOW_HTTP"]
    with pytest.raises(DownloadError, match="redirect from https to http is refused whatever ZOO_ALLOW_HTTP says"):
        zoo.pull("tls")
    assert server.requests == []  # the plain-http server never saw a request


def test_the_hub_token_goes_only_to_its_exact_origin(https_server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    cdn = LoopbackServer(tls=https_server.tls)  # same host, another port: another origin
    try:
        resolve = "/onnxmodelzoo/mnv2-12/resolve/main/mnv2-12.onnx"
        https_server.fault(resolve, redirect=cdn.add("/blob", mobilenet_bytes))
        monkeypatch.setenv("ZOO_HF_ENDPOINT", https_server.url(""))
        monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
        write_registry(entry("hfm", mobilenet_bytes, ["hf://onnxmodelzoo/mnv2-12/mnv2-12.onnx@main"]))
        assert zoo.pull("hfm").read_bytes() == mobilenet_bytes
        (hub_request,) = https_server.gets(resolve)
        assert hub_request.headers["authorization"] == "Bearer hf_secret_test_token"
        (cdn_request,) = cdn.gets("/blob")
        assert "authorization" not in cdn_request.headers and "cookie" not in cdn_request.headers
    finally:
        cdn.close()


def test_the_hub_token_never_travels_over_plain_http(server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    resolve = "/onnxmodelzoo/mnv2-12/resolve/main/mnv2-12.onnx"
    server.add(resolve, mobilenet_bytes)
    monkeypatch.setenv("ZOO_HF_ENDPOINT", server.url(""))  # an http endpoint on an allowed host
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    write_registry(entry("hfm", mobilenet_bytes, ["hf://onnxmodelzoo/mnv2-12/mnv2-12.onnx@main"]))
    assert zoo.pull("hfm").read_bytes() == mobilenet_bytes
    (request,) = server.gets(resolve)
    assert "authorization" not in request.headers


def test_origins_include_the_scheme_and_default_ports():
    assert origin("https://hub.example/a") == origin("https://HUB.example:443/b")
    assert origin("https://hub.example/a") != origin("http://hub.example/a")  # 443 vs 80: never the same
    assert origin("https://hub.example/a") != origin("https://hub.example:8443/a")


# -- 3. external data checked by sparkzoo itself ---------------------------------------------------

def _model_with_external_constant(location: str) -> bytes:
    """A model whose Constant node (not an initializer) keeps its tensor in an external file."""
    value = numpy_helper.from_array(np.ones((3,), np.float32), "secret_weights")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=value), helper.make_node("Add", ["x", "w"], ["y"])],
        "evil",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../../../../etc/passwd", "/etc/shadow", "weights.bin"])
def test_a_pulled_model_with_external_data_is_refused_and_nothing_is_published(
        server, zoo_env, write_registry, location):
    data = _model_with_external_constant(location)
    write_registry(entry("evil", data, [server.add("/evil.onnx", data)]))
    with pytest.raises(InvalidModelError, match=rf"tensor 'secret_weights'.*{location!r}"):
        zoo.pull("evil")
    assert ModelCache(zoo_env).shas() == []
    assert list((zoo_env / "tmp").iterdir()) == []  # the verified-but-refused bytes are not kept either


def test_an_added_model_with_escaping_external_data_names_the_tensor(zoo_env, tmp_path):
    path = tmp_path / "evil.onnx"
    path.write_bytes(_model_with_external_constant("../../etc/passwd"))
    with pytest.raises(InvalidModelError, match=r"tensor 'secret_weights'.*'../../etc/passwd'.*outside"):
        zoo.add(path, name="evil")
    result = zoo_cmd("add", str(path), "--name", "evil", check=9)
    assert "Traceback" not in result.stderr and not (zoo_env / "registry.json").exists()


# -- 4. a full disk --------------------------------------------------------------------------------

def test_disk_full_mid_download_keeps_the_partial_and_exits_8(server, zoo_env, write_registry, tmpfs, monkeypatch):
    home = tmpfs("home", "24m")
    monkeypatch.setenv("ZOO_HOME", str(home))
    data = np.random.default_rng(0).bytes(6 << 20)
    path = "/big.onnx"
    write_registry(entry("big", data, [server.add(path, data)]))
    server.throttle[path] = 3 << 20  # ~2 s: time for another writer to fill the disk meanwhile
    filler = home / "filler"

    def fill_when_started() -> None:
        deadline = time.monotonic() + 30
        while not server.gets(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        with open(filler, "wb") as fh:
            try:
                fh.write(b"\0" * (os.statvfs(home).f_bavail * os.statvfs(home).f_frsize - (1 << 20)))
            except OSError:
                pass

    # the pre-check wants 6 MiB + the 16 MiB reserve: 24 MiB passes it; the filler then takes the rest
    thread = threading.Thread(target=fill_when_started)
    thread.start()
    result = zoo_cmd("pull", "big", check=8)
    thread.join()
    assert "Traceback" not in result.stderr, result.stderr
    assert f"the disk holding {home / 'tmp'} filled up" in result.stderr
    assert "zoo cache prune" in result.stderr and "bytes are free" in result.stderr and "more bytes" in result.stderr
    (part,) = (home / "tmp").glob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(data) and part.read_bytes() == data[:kept]  # exactly the bytes received, no tail
    filler.unlink()
    del server.throttle[path]
    assert zoo.pull("big").read_bytes() == data
    assert server.gets(path)[-1].headers["range"] == f"bytes={kept}-"  # resumed where the disk filled up


def test_a_pull_by_sha256_alone_checks_a_free_space_floor(server, zoo_env, tmpfs, monkeypatch, mobilenet_bytes, tmp_path):
    home = tmpfs("home", "8m")  # below the 16 MiB reserve
    mirror = tmp_path / "mirror" / "sha256"
    mirror.mkdir(parents=True)
    (mirror / MOBILENET_SHA).write_bytes(mobilenet_bytes)
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("ZOO_MIRRORS", str(mirror.parent))
    with pytest.raises(InsufficientSpaceError, match=r"its size is not known.*bytes free.*zoo cache prune"):
        zoo.pull(f"sha256:{MOBILENET_SHA}")
    assert list((home / "tmp").iterdir()) == []


# -- 5. registry parsing never crashes ---------------------------------------------------------

@pytest.mark.parametrize("content", [
    b"[" * 100_000 + b"]" * 100_000,  # nesting that exhausts the parser
    b'{"schema_version": 1, "models": [], "description": "caf\xe9"}',  # Latin-1, not UTF-8
    b'{"schema_version": 1, "models": "all of them"}',  # wrong types
    b'{"schema_version": 1, "models": [{"name": {"a": ' * 2000 + b"1" + b"}}]}" * 2000,  # nesting in a field
    b"",
], ids=["nesting", "encoding", "types", "nested-field", "empty"])
def test_a_malformed_registry_is_a_registry_error_naming_the_file(zoo_env, tmp_path, monkeypatch, content):
    bad = tmp_path / "bad-registry.json"
    bad.write_bytes(content)
    monkeypatch.setenv("ZOO_REGISTRY", str(bad))
    with pytest.raises(RegistryError, match="bad-registry.json"):
        zoo.models()
    result = zoo_cmd("ls", check=3)
    assert "Traceback" not in result.stderr and "bad-registry.json" in result.stderr


def test_local_registry_files_have_the_same_size_limit_as_urls(zoo_env, tmp_path, monkeypatch):
    from zoo.hub.registry import REGISTRY_LIMIT

    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(REGISTRY_LIMIT + 1)  # sparse: no disk used
    monkeypatch.setenv("ZOO_REGISTRY", str(huge))
    with pytest.raises(RegistryError, match=r"huge.json.*larger than"):
        zoo.models()
    user = zoo_env / "registry.json"  # the user registry too
    zoo_env.mkdir(parents=True, exist_ok=True)
    user.write_bytes(b"[" * 100_000)
    monkeypatch.delenv("ZOO_REGISTRY")
    with pytest.raises(RegistryError, match=str(user)):
        zoo.models()


def test_a_registry_url_answering_broken_json_falls_back_to_its_cached_copy(server, zoo_env, monkeypatch, mobilenet_bytes, caplog):
    doc = {"schema_version": 1, "models": [entry("remote", mobilenet_bytes, ["https://example.invalid/m.onnx"])]}
    url = server.add("/registry.json", json.dumps(doc).encode())
    monkeypatch.setenv("ZOO_REGISTRY", url)
    assert [m.name for m in zoo.models() if m.name == "remote"] == ["remote"]  # fetched and copied
    server.add("/registry.json", b'{"schema_version": 1, "models": [')  # a broken answer
    with caplog.at_level("WARNING", logger="zoo"):
        assert [m.name for m in zoo.models() if m.name == "remote"] == ["remote"]
    assert "using the copy cached" in caplog.text and "not valid JSON" in caplog.text


# -- 6. a partial download that does not verify ----------------------------------------------------

def test_a_resumed_partial_that_does_not_verify_is_fetched_again_from_byte_0(server, served_mobilenet, zoo_env, mobilenet_bytes):
    wrong_start = b"\0" * 100_000  # a partial whose bytes went bad (disk fault, another writer)
    _plant_partial(zoo_env, MOBILENET_SHA, wrong_start, url=server.url(served_mobilenet),
                   validator=server.etags[served_mobilenet])
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    assert [r.headers.get("range") for r in server.gets(served_mobilenet)] == ["bytes=100000-", None]


# -- 7. Retry-After ------------------------------------------------------------------------------------

def test_retry_after_is_honoured(server, served_mobilenet, zoo_env, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_BACKOFF", "0.01")
    server.fault(served_mobilenet, status=503, headers={"Retry-After": "2"})
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    first, second = server.gets(served_mobilenet)
    assert second.at - first.at >= 1.9  # not the 0.01 s back-off


def test_retry_after_is_capped_by_the_timeout(server, served_mobilenet, zoo_env, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_TIMEOUT", "1")
    server.fault(served_mobilenet, status=429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    started = time.monotonic()
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    first, second = server.gets(served_mobilenet)
    assert 0.9 <= second.at - first.at and time.monotonic() - started < 10


# -- 8. a stalled body ------------------------------------------------------------------------------

def test_a_stalled_body_keeps_what_arrived_and_says_how_much(server, served_mobilenet, zoo_env, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_TIMEOUT", "1")
    monkeypatch.setenv("ZOO_RETRIES", "0")
    server.fault(served_mobilenet, stall_after=300_000, stall=4)
    with pytest.raises(DownloadError, match=r"connection lost after 300,000 bytes"):
        zoo.pull("mnv2")
    (part,) = (zoo_env / "tmp").glob("*.part")
    assert part.read_bytes() == mobilenet_bytes[:300_000]
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    assert server.gets(served_mobilenet)[-1].headers["range"] == "bytes=300000-"


# -- 9. offline with a local mirror ----------------------------------------------------------------

@pytest.mark.parametrize("form", ["file-url", "folder"])
def test_offline_pulls_from_a_local_mirror(served_mobilenet, server, zoo_env, mobilenet_bytes, tmp_path, monkeypatch, form):
    mirror = tmp_path / "mirror"
    (mirror / "sha256").mkdir(parents=True)
    (mirror / "sha256" / MOBILENET_SHA).write_bytes(mobilenet_bytes)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="no local mirror"):
        zoo.pull("mnv2")
    monkeypatch.setenv("ZOO_MIRRORS", mirror.as_uri() if form == "file-url" else str(mirror))
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    assert server.requests == []  # the network was never touched


# -- 10. verify on a read-only cache ------------------------------------------------------------

def test_verify_on_a_read_only_cache_reports_every_corrupt_blob(server, zoo_env, write_registry):
    blobs = [bytes([k]) * 5000 for k in range(3)]
    write_registry(*(entry(f"m{k}", b, [server.add(f"/m{k}", b)]) for k, b in enumerate(blobs)))
    paths = [zoo.pull(f"m{k}") for k in range(3)]
    for p in paths[:2]:  # two of three go bad
        p.chmod(0o644)
        p.write_bytes(b"X" * 5000)
        p.chmod(0o444)
    dirs = [zoo_env, *(d for d in zoo_env.rglob("*") if d.is_dir())]
    for d in dirs:
        d.chmod(0o555)
    try:
        script = Path(sys.executable).with_name("zoo")
        result = subprocess.run([*without_privileges(), str(script), "verify", "--json"], capture_output=True,
                                text=True, timeout=120)
    finally:
        for d in dirs:
            d.chmod(0o755)
    assert result.returncode == 7, result.stderr
    statuses = {r["names"][0]: (r["status"], r["reason"]) for r in json.loads(result.stdout)}
    assert statuses["m0"][0] == statuses["m1"][0] == "corrupt" and statuses["m2"] == ("ok", None)
    assert "hash to" in statuses["m0"][1]


def test_a_failure_of_only_checksum_mismatches_says_so(server, zoo_env, write_registry, mobilenet_bytes):
    wrong = mobilenet_bytes[:-1] + b"\0"
    write_registry(entry("m", mobilenet_bytes, [server.add("/a", wrong), server.add("/b", wrong)]))
    with pytest.raises(ChecksumError) as caught:
        zoo.pull("m")
    assert "do not match the sha256 the registry pins" in str(caught.value)
    assert "network or proxy" not in str(caught.value)


# -- 11. a closed pipe ---------------------------------------------------------------------------

def test_the_cli_exits_quietly_on_a_closed_pipe(served_mobilenet, zoo_env):
    script = Path(sys.executable).with_name("zoo")
    proc = subprocess.Popen([str(script), "ls", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -1` having exited before the first write
    _, err = proc.communicate(timeout=60)
    assert err.decode() == "" and proc.returncode == 141
    shell = subprocess.run(f"'{script}' info mnv2 --json | head -1", shell=True, capture_output=True, text=True,
                           timeout=60)
    assert shell.stdout == "{\n" and shell.stderr == ""


def test_a_link_planted_as_an_optimised_model_is_never_loaded(zoo_env, tmp_path):
    from zoo.hub import derived, optimized
    from zoo.hub.cache import ModelCache, hash_file
    from zoo.testing import tiny

    model = Path(tiny.tiny_model_path())
    sha = hash_file(model)
    cache = ModelCache(zoo_env)
    assert optimized.load(model, sha, cache, str) is not None
    target = cache.optimized_path(derived.read(cache, optimized.derivation(sha)).output.sha256)
    good = target.read_bytes()
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(good)  # the very bytes, outside the cache: still never loaded through a link
    target.unlink()
    os.symlink(evil, target)
    loaded = optimized.load(model, sha, cache, lambda p: (p, Path(p).read_bytes()))
    assert loaded is not None and loaded[1] == good
    assert not target.is_symlink() and target.read_bytes() == good  # built anew, a regular file
    assert evil.read_bytes() == good
