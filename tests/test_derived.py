"""What the cache derives from a verified model is verified too (issue 34): optimised graphs, cut
models and layer tables, tampered with as an attacker or a careless user would, are quarantined and
built again from the verified model; `zoo verify` rebuilds and reports them.

Real files on a real file system, real ONNX Runtime (the optimiser really runs in its child), the
real CLI. The tampering is done here by hand, the way a person with write access to ZOO_HOME would:
editing JSON, flipping bytes, planting links, re-signing records with the public scheme.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

import zoo
from _models import resnet_like
from conftest import MOBILENET_SHA, zoo_cmd
from zoo.hub import derived, layer_cuts, optimized
from zoo.hub.cache import ModelCache
from zoo.hub.onnx_files import stamp_entry
from zoo.runtime import sessions
from zoo.runtime.sessions import RuntimeOptions

CPU1 = RuntimeOptions(device="cpu", intra_op_threads=1)


def _resign(path: Path, change) -> None:
    """Edit a record and recompute its checksum the way anyone can who reads the (public) scheme."""
    doc = json.loads(path.read_text())
    doc.pop("check")
    change(doc)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    doc["check"] = hashlib.sha256(canonical).hexdigest()
    path.chmod(0o644)
    path.write_text(json.dumps(doc))


def _edit(path: Path, change, resigned: bool) -> None:
    """Change a record by hand (its checksum then no longer fits) or with the scheme (re-signed)."""
    if resigned:
        _resign(path, change)
        return
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _outputs(sess) -> np.ndarray:
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(7).random([2, *inp.shape[1:]], dtype=np.float32)
    return sess.run(None, {inp.name: x})[0]


def _forget(sha: str) -> None:
    for key in [k for k in sessions._SESSIONS if k[0] == sha]:
        del sessions._SESSIONS[key]


def _model(tmp_path: Path, seed: int) -> tuple[str, Path]:
    data = resnet_like(seed=seed)
    path = tmp_path / f"model-{seed}.onnx"
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), path


def _optimise(home: Path, sha: str, path: Path) -> Path:
    """Build the optimised file of ``path`` in ``home`` as a worker does; its path."""
    _forget(sha)
    sessions.session(sha, lambda: path, CPU1, ModelCache(home))
    _forget(sha)
    record = derived.read(ModelCache(home), optimized.derivation(sha))
    return ModelCache(home).optimized_path(record.output.sha256)


TAMPERINGS = ["another-model", "one-byte", "hard-link", "symlink", "record-to-another-file",
              "record-to-another-file-resigned", "record-from-another-model", "record-garbage"]


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_optimised_graph_is_never_loaded(tmp_path, caplog, how):
    home = tmp_path / "home"
    cache = ModelCache(home)
    sha, path = _model(tmp_path, seed=11)
    other_sha, other_path = _model(tmp_path, seed=12)  # another model: its optimised file is valid ONNX
    good = _optimise(home, sha, path)
    other = _optimise(home, other_sha, other_path)
    record = derived.record_path(cache, optimized.derivation(sha).key)
    outside = tmp_path / "outside.onnx"
    if how == "another-model":
        good.chmod(0o644)
        good.write_bytes(other.read_bytes())
    elif how == "one-byte":
        data = bytearray(good.read_bytes())
        data[len(data) // 2] ^= 0x01  # a weight, most likely: still a loadable model
        good.chmod(0o644)
        good.write_bytes(bytes(data))
    elif how == "hard-link":  # the same bytes, but a second name outside the cache could change them
        outside.write_bytes(good.read_bytes())
        good.unlink()
        os.link(outside, good)
    elif how == "symlink":
        outside.write_bytes(good.read_bytes())
        good.unlink()
        os.symlink(outside, good)
    elif how == "record-to-another-file":  # edited by hand: the checksum no longer fits
        doc = json.loads(record.read_text())
        doc["output"] = {"sha256": other.stem, "bytes": other.stat().st_size}
        record.write_text(json.dumps(doc))
    elif how == "record-to-another-file-resigned":  # edited with the scheme: the file's stamp does not fit
        _resign(record, lambda doc: doc.update(output={"sha256": other.stem, "bytes": other.stat().st_size}))
    elif how == "record-from-another-model":  # the other model's record copied over this one's
        record.write_bytes(derived.record_path(cache, optimized.derivation(other_sha).key).read_bytes())
    elif how == "record-garbage":
        record.write_bytes(b"\x00" * 100)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        sess = sessions.session(sha, lambda: path, CPU1, cache)
    plain = sessions.session(sha + "-plain", lambda: path, RuntimeOptions(device="cpu", intra_op_threads=1))
    np.testing.assert_allclose(_outputs(sess), _outputs(plain), rtol=1e-5, atol=1e-5)
    assert any("quarantined" in r.getMessage() for r in caplog.records), how
    rebuilt = derived.read(cache, optimized.derivation(sha))  # built again from the verified model
    again = cache.optimized_path(rebuilt.output.sha256)
    assert not again.is_symlink() and os.stat(again).st_nlink == 1
    assert hashlib.sha256(again.read_bytes()).hexdigest() == again.stem
    if outside.exists():
        assert outside.read_bytes() != b"" and not os.path.samefile(outside, again)
    _forget(sha)
    _forget(sha + "-plain")


def test_a_derived_file_is_hashed_once_per_process_and_again_when_it_changes(tmp_path):
    home = tmp_path / "home"
    cache = ModelCache(home)
    sha, path = _model(tmp_path, seed=13)
    good = _optimise(home, sha, path)
    record = derived.read(cache, optimized.derivation(sha))
    fd = os.open(good, os.O_RDONLY)
    try:
        assert derived.file_problem(fd, record.output, record.derivation) is None
    finally:
        os.close(fd)
    st = good.stat()
    assert (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) in derived._VERIFIED
    data = bytearray(good.read_bytes())  # an edit in place, with the mtime put back: the ctime still moves
    data[100] ^= 0xFF
    good.chmod(0o644)
    with open(good, "r+b") as fh:
        fh.write(bytes(data))
    os.utime(good, ns=(st.st_atime_ns, st.st_mtime_ns))
    fd = os.open(good, os.O_RDONLY)
    try:
        assert "hash to" in derived.file_problem(fd, record.output, record.derivation)
    finally:
        os.close(fd)


def test_a_blob_edited_in_place_with_its_mtime_restored_is_hashed_again(zoo_env, mobilenet_bytes):
    cache = ModelCache(zoo_env)
    sha, blob = cache.import_bytes(mobilenet_bytes)
    assert cache.lookup(sha) == blob
    st = blob.stat()
    blob.chmod(0o644)
    with open(blob, "r+b") as fh:
        fh.seek(len(mobilenet_bytes) // 2)
        fh.write(b"\x00\x01\x02\x03")
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert blob.stat().st_mtime_ns == st.st_mtime_ns and blob.stat().st_size == st.st_size
    assert cache.lookup(sha) is None and not blob.exists()  # quarantined, never served


# -- cut models and layer tables ---------------------------------------------------------------------
@pytest.fixture
def resnet_file(tmp_path):
    path = tmp_path / "resnet_like.onnx"
    path.write_bytes(resnet_like())
    return path


def _records(home: Path, kind: str) -> list[Path]:
    return [p for p in (home / "derived").glob("*.json") if json.loads(p.read_text())["kind"] == kind]


def _output_name(path: Path) -> str:
    return onnx.load(str(path)).graph.output[0].name


@pytest.mark.parametrize("resigned", [False, True])
def test_a_cut_record_pointing_at_the_full_model_is_caught(zoo_env, resnet_file, caplog, resigned):
    first = zoo.cut(str(resnet_file), 1)
    full_sha, _ = ModelCache(zoo_env).import_bytes(resnet_file.read_bytes())  # the full model, a verified blob
    (record,) = _records(zoo_env, "cut")
    _edit(record, lambda doc: doc.update(output={"sha256": full_sha, "bytes": resnet_file.stat().st_size}), resigned)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        again = zoo.cut(str(resnet_file), 1)
    assert again == first and _output_name(again) == "flat"  # the cut, not the 10-class full model
    assert ModelCache(zoo_env).lookup(full_sha) is not None, "the full model itself is not touched"
    assert any("quarantined" in r.getMessage() for r in caplog.records)


def test_a_cut_record_pointing_at_another_cut_is_caught(zoo_env, resnet_file):
    one, two = zoo.cut(str(resnet_file), 1), zoo.cut(str(resnet_file), 2)
    key = layer_cuts.cut_derivation(hashlib.sha256(resnet_file.read_bytes()).hexdigest(),
                                    zoo.cuts(str(resnet_file))[1]).key
    _resign(derived.record_path(ModelCache(zoo_env), key),
            lambda doc: doc.update(output={"sha256": two.name, "bytes": two.stat().st_size}))
    assert zoo.cut(str(resnet_file), 1) == one and _output_name(one) == "flat"


@pytest.mark.parametrize("resigned", [False, True])
def test_an_edited_layer_table_is_caught_and_analysed_again(served_mobilenet, zoo_env, resigned):
    zoo.pull("mnv2")
    truth = zoo.cuts("mnv2")
    (record,) = _records(zoo_env, "cuts")

    def change(doc):  # cut 1 moved to another layer (cut 2's tensor, with cut 2's shape to match)
        doc["value"][1].update(tensor=doc["value"][2]["tensor"], shape=doc["value"][2]["shape"],
                               feature_length=doc["value"][2]["feature_length"])

    _edit(record, change, resigned)
    info = zoo_cmd("info", "mnv2", "--json")  # a new process: the table is checked against the model
    assert [c["tensor"] for c in json.loads(info.stdout)["available_cuts"]] == [c.tensor for c in truth]
    assert "layer table" in info.stderr and "quarantined" in info.stderr
    layer_cuts._CHECKED.clear()
    assert zoo.cuts("mnv2") == truth and _output_name(zoo.cut("mnv2", 1)) == truth[1].output_name


@pytest.mark.parametrize("how", ["symlink", "huge", "copied-from-another-model", "not-json", "folder"])
def test_a_hostile_record_file_is_quarantined(zoo_env, resnet_file, tmp_path, how):
    truth = zoo.cuts(str(resnet_file))
    layer_cuts._CHECKED.clear()
    (record,) = _records(zoo_env, "cuts")
    other = tmp_path / "other.onnx"
    other.write_bytes(resnet_like(seed=5, size=24))
    zoo.cuts(str(other))
    other_record = [p for p in _records(zoo_env, "cuts") if p != record][0]
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(record.read_bytes())
    record.unlink()
    if how == "symlink":
        os.symlink(elsewhere, record)
    elif how == "huge":
        record.write_bytes(b" " * (2 << 20))
    elif how == "copied-from-another-model":
        record.write_bytes(other_record.read_bytes())
    elif how == "not-json":
        record.write_bytes(b"{" * 100000)
    elif how == "folder":
        record.mkdir()
    assert zoo.cuts(str(resnet_file)) == truth
    assert record.is_file() and not record.is_symlink()
    assert json.loads(record.read_text())["inputs"]["source"] == hashlib.sha256(resnet_file.read_bytes()).hexdigest()
    assert elsewhere.read_bytes() != b"" and list((zoo_env / "quarantine").iterdir())


def test_stamps_are_read_without_parsing_the_graph_and_hostile_files_are_bounded(tmp_path):
    from zoo.hub.onnx_files import stamps

    model = tmp_path / "m.onnx"
    model.write_bytes(resnet_like() + stamp_entry("zoo.derivation", "k1") + stamp_entry("other", "x"))
    fd = os.open(model, os.O_RDONLY)
    try:
        assert stamps(fd) == {"k1"}
    finally:
        os.close(fd)
    m = onnx.load(str(model))  # the appended entries are ordinary metadata to onnx
    assert {(p.key, p.value) for p in m.metadata_props} >= {("zoo.derivation", "k1"), ("other", "x")}
    for hostile in [b"\xff" * 64, b"\x0f" * 10, b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                    b"\x08" + b"\x80" * 30, bytes([14 << 3 | 2, 5]) + b"\x0a\x10abc"]:
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(hostile)
        fd = os.open(bad, os.O_RDONLY)
        try:
            with pytest.raises(ValueError):
                stamps(fd)
        finally:
            os.close(fd)


# -- zoo verify ---------------------------------------------------------------------------------------
def test_zoo_verify_rebuilds_tampered_derived_files_and_says_so(served_mobilenet, zoo_env, tmp_path):
    zoo.pull("mnv2")
    cut = zoo.cut("mnv2", 1)
    cache = ModelCache(zoo_env)
    # a forger who knows the scheme: another model's optimised file, stamped with this derivation's key,
    # and a re-signed record. Nothing at load time can tell; `zoo verify` runs both and compares.
    good = _optimise(zoo_env, cut.name, cut)
    other_sha, other_path = _model(tmp_path, seed=21)
    other = _optimise(zoo_env, other_sha, other_path)
    forged = tmp_path / "forged.onnx"
    key = optimized.derivation(cut.name).key
    forged.write_bytes(other.read_bytes() + stamp_entry(derived.STAMP_KEY, key))
    forged_sha = hashlib.sha256(forged.read_bytes()).hexdigest()
    forged.rename(cache.optimized_path(forged_sha))
    _resign(derived.record_path(cache, key),
            lambda doc: doc.update(output={"sha256": forged_sha, "bytes": cache.optimized_path(forged_sha).stat().st_size}))
    # a layer table whose probed shape was changed consistently (shape and feature count, re-signed)
    (table,) = [p for p in _records(zoo_env, "cuts")
                if json.loads(p.read_text())["inputs"]["source"] == MOBILENET_SHA]
    _resign(table, lambda doc: doc["value"][1].update(shape=[None, 1000], feature_length=1000))
    first = zoo_cmd("verify", "--json", check=7)
    results = json.loads(first.stdout)
    by_kind = {(r["kind"], r["status"]) for r in results}
    assert ("model", "ok") in by_kind
    assert ("optimised graph", "rebuilt") in by_kind and ("layer table", "rebuilt") in by_kind
    rebuilt = [r for r in results if r["status"] == "rebuilt"]
    assert all(r["reason"] for r in rebuilt) and any("mnv2 cut 1" in r["names"] for r in rebuilt)
    assert forged_sha not in {r["sha256"] for r in results if r["status"] == "ok"}
    text = zoo_cmd("verify", check=0).stdout  # everything checks out now
    assert "rebuilt" not in text and "optimised graph of mnv2 cut 1" in text and "layer table of mnv2" in text
    assert zoo.cuts("mnv2")[1].feature_length == 1280
    del good


def test_zoo_verify_and_prune_on_records_of_other_machines_and_removed_models(served_mobilenet, zoo_env, tmp_path):
    zoo.pull("mnv2")
    cache = ModelCache(zoo_env)
    sha, path = _model(tmp_path, seed=31)
    cache.import_bytes(path.read_bytes())
    good = _optimise(zoo_env, sha, path)
    foreign = derived.Derivation("optimized", {**optimized.derivation(sha).inputs, "machine": "0" * 16})
    derived.write(cache, foreign, output=derived.Output("e" * 64, 10))
    (zoo_env / "optimized" / f"{'e' * 64}.onnx").write_bytes(b"x" * 10)
    (zoo_env / "cuts").mkdir()  # an older sparkzoo's unverified records
    (zoo_env / "cuts" / f"{MOBILENET_SHA}.json").write_text("{}")
    results = json.loads(zoo_cmd("verify", "--json", check=0).stdout)
    assert ("unused", "optimised graph") in {(r["status"], r["kind"]) for r in results}
    report = json.loads(zoo_cmd("cache", "prune", "--json").stdout)
    assert report["foreign_optimized"] == 1 and report["stale_records"] == 2  # the foreign record, cuts/
    assert good.exists() and not (zoo_env / "cuts").exists()
    cache.remove(sha)  # the model goes: its optimised file and record are no use any more
    report = json.loads(zoo_cmd("cache", "prune", "--json").stdout)
    assert report["foreign_optimized"] == 1 and report["stale_records"] == 1 and not good.exists()


def test_derived_folders_that_are_links_are_never_used(zoo_env, resnet_file, tmp_path):
    from zoo.errors import CacheError

    outside = tmp_path / "outside"
    outside.mkdir()
    zoo_env.mkdir()
    os.symlink(outside, zoo_env / "derived")
    with pytest.raises(CacheError, match="symbolic link"):
        zoo.cuts(str(resnet_file))
    (zoo_env / "derived").unlink()
    os.symlink(outside, zoo_env / "optimized")
    sha = hashlib.sha256(resnet_file.read_bytes()).hexdigest()
    _forget(sha)
    sess = sessions.session(sha, lambda: resnet_file, CPU1, ModelCache(zoo_env))  # optimised in-process instead
    assert _outputs(sess).shape[0] == 2 and list(outside.iterdir()) == []
    _forget(sha)
