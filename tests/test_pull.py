"""zoo.pull against a real loopback HTTP server: hits, mirrors, resume, failover, offline."""

from __future__ import annotations

import hashlib
import os

import pytest

import zoo
from conftest import MOBILENET_SHA, entry
from zoo.errors import ChecksumError, DownloadError, InsufficientSpaceError, OfflineError


def blobs(home):
    d = home / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def leftovers(home):
    d = home / "tmp"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_pull_by_name_and_alias_then_cache_hit_without_network(server, served_mobilenet, zoo_env, mobilenet_bytes):
    path = zoo.pull("mnv2")
    assert path == zoo_env / "blobs" / "sha256" / MOBILENET_SHA
    assert path.read_bytes() == mobilenet_bytes
    assert server.full_downloads(served_mobilenet) == 1
    assert leftovers(zoo_env) == []
    server.close()  # from here on any network access would fail
    assert zoo.pull("mobile") == path
    assert zoo.pull(f"sha256:{MOBILENET_SHA}") == path
    assert len(server.gets(served_mobilenet)) == 1


def test_cache_hit_trusts_the_verified_record_but_rehashes_a_touched_blob(server, served_mobilenet, zoo_env):
    path = zoo.pull("mnv2")
    index = zoo_env / "index.json"
    import json

    record = json.loads(index.read_text())["blobs"][MOBILENET_SHA]
    assert record["size"] == path.stat().st_size and record["ino"] == path.stat().st_ino
    os.utime(path, ns=(0, 0))  # same bytes, new mtime: re-hashed once, then trusted again
    assert zoo.pull("mnv2") == path
    assert json.loads(index.read_text())["blobs"][MOBILENET_SHA]["mtime_ns"] == 0
    assert len(server.gets(served_mobilenet)) == 1


def test_pull_through_mirror_before_upstream(server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    upstream = server.add("/upstream/m.onnx", mobilenet_bytes)
    server.add(f"/mirror/sha256/{MOBILENET_SHA}", mobilenet_bytes)
    write_registry(entry("m", mobilenet_bytes, [upstream]))
    monkeypatch.setenv("ZOO_MIRRORS", server.url("/mirror"))
    assert zoo.pull("m").read_bytes() == mobilenet_bytes
    assert len(server.gets(f"/mirror/sha256/{MOBILENET_SHA}")) == 1
    assert server.gets("/upstream/m.onnx") == []


def test_dropped_connection_resumes_with_range_in_the_same_pull(server, served_mobilenet, zoo_env, mobilenet_bytes):
    server.fault(served_mobilenet, drop_after=1_000_000)
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    first, second = server.gets(served_mobilenet)
    assert first.sent == 1_000_000
    assert second.headers["range"] == "bytes=1000000-"
    assert second.headers["if-range"].startswith('"')
    assert second.status == 206 and second.sent == len(mobilenet_bytes) - 1_000_000
    assert leftovers(zoo_env) == []


def test_dropped_connection_is_resumed_by_the_next_pull(server, served_mobilenet, zoo_env, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_RETRIES", "0")
    server.fault(served_mobilenet, drop_after=2_000_000)
    with pytest.raises(DownloadError, match="connection closed after 2,000,000 of 3,655,640 bytes"):
        zoo.pull("mnv2")
    assert blobs(zoo_env) == []
    parts = [p for p in leftovers(zoo_env) if p.endswith(".part")]
    assert len(parts) == 1 and (zoo_env / "tmp" / parts[0]).stat().st_size == 2_000_000
    path = zoo.pull("mnv2")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MOBILENET_SHA
    resumed = server.gets(served_mobilenet)[-1]
    assert resumed.headers["range"] == "bytes=2000000-" and resumed.status == 206
    assert leftovers(zoo_env) == []


def test_resume_restarts_cleanly_when_the_server_answers_200(server, served_mobilenet, zoo_env, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_RETRIES", "0")
    server.fault(served_mobilenet, drop_after=1_500_000)
    with pytest.raises(DownloadError):
        zoo.pull("mnv2")
    server.fault(served_mobilenet, ignore_range=True)
    assert zoo.pull("mnv2").read_bytes() == mobilenet_bytes
    last = server.gets(served_mobilenet)[-1]
    assert "range" in last.headers and last.status == 200


def test_wrong_bytes_from_a_mirror_are_never_published(server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    bad = f"/bad/sha256/{MOBILENET_SHA}"
    server.add(bad, mobilenet_bytes)
    server.fault(bad, corrupt=True)
    upstream = server.add("/up/m.onnx", mobilenet_bytes)
    write_registry(entry("m", mobilenet_bytes, [upstream]))
    monkeypatch.setenv("ZOO_MIRRORS", server.url("/bad"))
    path = zoo.pull("m")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MOBILENET_SHA
    assert len(server.gets(bad)) == 1 and len(server.gets("/up/m.onnx")) == 1
    assert blobs(zoo_env) == [MOBILENET_SHA] and leftovers(zoo_env) == []


def test_only_wrong_bytes_everywhere_raises_checksum_error_and_publishes_nothing(server, zoo_env, write_registry, mobilenet_bytes):
    url = server.add("/m.onnx", mobilenet_bytes)
    server.fault("/m.onnx", corrupt=True)
    write_registry(entry("m", mobilenet_bytes, [url]))
    with pytest.raises(ChecksumError, match="checksum mismatch") as info:
        zoo.pull("m")
    assert len(info.value.attempts) == 1
    assert blobs(zoo_env) == [] and leftovers(zoo_env) == []


def test_failover_across_404_500_and_timeout(server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_TIMEOUT", "0.5")
    sha_path = f"sha256/{MOBILENET_SHA}"
    server.add(f"/m500/{sha_path}", mobilenet_bytes)
    server.add(f"/slow/{sha_path}", mobilenet_bytes)
    for _ in range(2):  # the first try and one retry each
        server.fault(f"/m500/{sha_path}", status=500)
        server.fault(f"/slow/{sha_path}", delay=2)
    upstream = server.add("/up/m.onnx", mobilenet_bytes)
    write_registry(entry("m", mobilenet_bytes, [upstream]))
    monkeypatch.setenv("ZOO_MIRRORS", " ".join(server.url(p) for p in ("/m404", "/m500", "/slow")))
    assert zoo.pull("m").read_bytes() == mobilenet_bytes
    assert len(server.gets(f"/m404/{sha_path}")) == 1  # 404 is permanent: no retry
    assert len(server.gets(f"/m500/{sha_path}")) == 2  # 500 is transient: retried once
    assert len(server.gets("/up/m.onnx")) == 1


def test_all_sources_failing_lists_every_source_and_why(server, zoo_env, write_registry, mobilenet_bytes, monkeypatch):
    monkeypatch.setenv("ZOO_RETRIES", "0")
    server.add("/broken.onnx", mobilenet_bytes)
    server.fault("/broken.onnx", status=503)
    monkeypatch.setenv("ZOO_MIRRORS", server.url("/nothing"))
    write_registry(entry("m", mobilenet_bytes, [server.url("/broken.onnx"), "http://evil.example/m.onnx", "ftp://x/y"]))
    with pytest.raises(DownloadError) as info:
        zoo.pull("m")
    message = str(info.value)
    assert f"/nothing/sha256/{MOBILENET_SHA}: HTTP 404" in message
    assert "/broken.onnx: HTTP 503" in message
    assert "plain http to evil.example is not allowed" in message
    assert "unsupported URL scheme 'ftp'" in message
    assert "'m'" in message and MOBILENET_SHA in message
    assert len(info.value.attempts) == 4
    assert blobs(zoo_env) == [] and leftovers(zoo_env) == []


def test_size_mismatch_fails_fast(server, zoo_env, write_registry, mobilenet_bytes):
    # 64 MiB more than pinned: far more than loopback socket buffers can absorb, so "sent" shows
    # whether the client stopped at the Content-Length header rather than reading the body
    body = mobilenet_bytes + b"x" * (64 << 20)
    url = server.add("/m.onnx", body)
    write_registry(entry("m", mobilenet_bytes, [url]))
    with pytest.raises(DownloadError, match=f"size mismatch: the source has {len(body):,} bytes"):
        zoo.pull("m")
    assert server.gets("/m.onnx")[0].sent < 32 << 20
    assert leftovers(zoo_env) == [] and blobs(zoo_env) == []


def test_free_space_is_checked_before_any_download(server, zoo_env, write_registry, mobilenet_bytes):
    url = server.add("/huge.onnx", mobilenet_bytes)
    write_registry(entry("huge", mobilenet_bytes, [url], bytes=2**40))  # the largest size a registry may give
    with pytest.raises(InsufficientSpaceError, match=r"to download 'huge' .* needs 1,099,511,627,776 bytes"):
        zoo.pull("huge")
    assert server.requests == [] and leftovers(zoo_env) == [] and blobs(zoo_env) == []


def test_offline_serves_cached_models_and_explains_misses(server, served_mobilenet, zoo_env, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        zoo.pull("mnv2")
    message = str(info.value)
    assert "'mnv2'" in message and MOBILENET_SHA in message and "zoo pull mnv2" in message
    assert server.requests == []
    monkeypatch.delenv("ZOO_OFFLINE")
    path = zoo.pull("mnv2")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    server.close()
    assert zoo.pull("mnv2") == path


def test_plain_http_refused_unless_allowed(server, served_mobilenet, zoo_env, monkeypatch):
    monkeypatch.delenv("ZOO_ALLOW_HTTP")
    with pytest.raises(DownloadError, match="plain http to 127.0.0.1 is not allowed.*ZOO_ALLOW_HTTP"):
        zoo.pull("mnv2")
    assert server.requests == []


def test_file_and_fsspec_sources(zoo_env, write_registry, mobilenet_bytes, tmp_path, monkeypatch):
    fsspec = pytest.importorskip("fsspec")
    src = tmp_path / "m.onnx"
    src.write_bytes(mobilenet_bytes)
    write_registry(entry("local", mobilenet_bytes, [src.as_uri()]))
    assert zoo.pull("local").read_bytes() == mobilenet_bytes
    zoo.remove("local")

    with fsspec.open("memory://bucket/m.onnx", "wb") as fh:
        fh.write(mobilenet_bytes)
    write_registry(entry("mem", mobilenet_bytes, ["memory://bucket/m.onnx"]))
    with pytest.raises(DownloadError, match="unsupported URL scheme 'memory'"):
        zoo.pull("mem")
    monkeypatch.setenv("ZOO_FSSPEC_SCHEMES", "memory")
    assert zoo.pull("mem").read_bytes() == mobilenet_bytes


def test_unknown_model_suggests_close_names(zoo_env):
    with pytest.raises(zoo.errors.ModelNotFoundError, match="Did you mean 'resnet50'"):
        zoo.pull("resnet5")
