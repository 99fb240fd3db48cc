"""Models made of several files (ONNX external data): one registry entry whose files are all pinned,
fetched, cached and run together, for the real MobileNet v2 int8 re-saved with its weights in two
external files (the layout of every model over 2 GB, at a size a test can move)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import zoo
from conftest import MOBILENET, SHARED, entry, missing, zoo_cmd
from zoo.errors import ChecksumError, InvalidModelError, RegistryError
from zoo.hub import bundles
from zoo.hub.cache import ModelCache
from zoo.hub.presets import IMAGENET

PHOTOS = SHARED / "data" / "imagenet-sample"
PARTS = ("weights-1.bin", "weights-2.bin")


@pytest.fixture
def split_model(tmp_path, mobilenet_bytes) -> Path:
    """MobileNet v2 int8 with its 36 large tensors in two external files beside the graph file."""
    from onnx.external_data_helper import set_external_data

    model = onnx.load_model_from_string(mobilenet_bytes)
    big = [t for t in model.graph.initializer if len(t.raw_data) > 4096]
    assert len(big) > 10
    for i, t in enumerate(big):
        set_external_data(t, location=PARTS[i % 2])
    folder = tmp_path / "split"
    folder.mkdir()
    onnx.save_model(model, str(folder / "mnv2.onnx"))
    assert sorted(os.listdir(folder)) == ["mnv2.onnx", *PARTS]
    assert (folder / "mnv2.onnx").stat().st_size < len(mobilenet_bytes) // 4  # the weights really moved out
    return folder / "mnv2.onnx"


def _pinned(path: Path, url: str) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "sources": [url]}


@pytest.fixture
def served_split(split_model, server, zoo_env, write_registry):
    """The split model served over loopback HTTP and registered as one entry, ``mnv2-split``."""
    graph = split_model.read_bytes()
    parts = {p: _pinned(split_model.parent / p, server.add(f"/split/{p}", (split_model.parent / p).read_bytes()))
             for p in PARTS}
    write_registry(entry("mnv2-split", graph, [server.add("/split/mnv2.onnx", graph)], preprocess=IMAGENET,
                         external_data=parts))
    return parts


def _outputs(model, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model) if isinstance(model, Path) else model, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _same_files(folder: Path, home: Path) -> dict[str, str]:
    """name -> sha256 of each bundle entry, asserting each is a hard link to its verified blob."""
    out = {}
    for f in sorted(folder.iterdir()):
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        assert not f.is_symlink() and os.path.samefile(f, home / "blobs" / "sha256" / sha), f
        out[f.name] = sha
    return out


def test_pull_fetches_every_file_and_the_model_runs_from_a_bundle_of_links(served_split, split_model, zoo_env,
                                                                            mobilenet_bytes):
    path = zoo.pull("mnv2-split")
    sha = hashlib.sha256(split_model.read_bytes()).hexdigest()
    assert path.parent.parent == zoo_env / "bundles" and path.name == "model.onnx"
    assert _same_files(path.parent, zoo_env) == {"model.onnx": sha, **{p: served_split[p]["sha256"] for p in PARTS}}
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    np.testing.assert_array_equal(_outputs(path, x), _outputs(mobilenet_bytes, x))

    info = zoo.info("mnv2-split")
    assert info["total_bytes"] == split_model.stat().st_size + sum(p["bytes"] for p in served_split.values())
    assert info["external_data"] == served_split and info["available_cuts"][1]["feature_length"] == 1280
    assert [m.name for m in zoo.models(max_bytes=info["total_bytes"] - 1) if m.name == "mnv2-split"] == []
    assert zoo.pull("mnv2-split") == path  # a hit: nothing rebuilt
    assert zoo.remove("mnv2-split") and not path.parent.exists() and ModelCache(zoo_env).shas() == []


@pytest.mark.slow
def test_a_cut_keeps_the_weights_in_place_and_equals_the_single_file_model(served_split, zoo_env, spark):
    if not PHOTOS.exists():
        missing("the shared photos are not beside the checkout")
    photos = sorted(PHOTOS.glob("*.JPEG"))[:6]
    df = spark.createDataFrame([(str(p), p.read_bytes()) for p in photos], "path string, content binary")

    def features(model: str) -> dict[str, np.ndarray]:
        out = zoo.pipeline(model, cut=1, outputFormat="array", preprocess="imagenet").fit(df).transform(df)
        return {r["path"]: np.array(r["features"]) for r in out.collect()}

    split, single = features("mnv2-split"), features(str(MOBILENET))
    assert sorted(split) == sorted(single) and all(split[k].shape == (1280,) for k in split)
    for k in split:
        np.testing.assert_allclose(split[k], single[k], rtol=1e-6, atol=1e-6)

    cut_file = zoo.cut("mnv2-split", 1)  # the cut runs from its own bundle: a small graph, the same weight files
    assert cut_file.name == "model.onnx" and cut_file.parent.parent == zoo_env / "bundles"
    names = _same_files(cut_file.parent, zoo_env)
    assert set(names) - {"model.onnx"} <= set(PARTS) and cut_file.stat().st_size < 300_000


def test_an_executor_with_a_cold_cache_fetches_every_file_and_builds_the_cut_beside_them(served_split, zoo_env,
                                                                                        tmp_path):
    from zoo.config import settings
    from zoo.runtime import models

    spec, driver_file = models.prepare("mnv2-split", 1)
    assert {p.location for p in spec.parts} == set(PARTS)
    node = tmp_path / "node-home"
    on_node = dataclasses.replace(spec, settings=settings({**os.environ, "ZOO_HOME": str(node)}))
    got = models.obtain(on_node)
    assert got.parent.parent == node / "bundles" and got.parent.name == driver_file.parent.name
    assert _same_files(got.parent, node) == _same_files(driver_file.parent, zoo_env)
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    np.testing.assert_array_equal(_outputs(got, x), _outputs(driver_file, x))


def test_a_part_with_wrong_bytes_is_refused_and_no_bundle_is_made(split_model, server, zoo_env, write_registry):
    graph = split_model.read_bytes()
    parts = {p: _pinned(split_model.parent / p, server.add(f"/split/{p}", (split_model.parent / p).read_bytes()))
             for p in PARTS}
    server.add("/split/weights-2.bin", b"\0" * parts["weights-2.bin"]["bytes"])  # tampered upstream
    write_registry(entry("mnv2-split", graph, [server.add("/split/mnv2.onnx", graph)], external_data=parts))
    with pytest.raises(ChecksumError, match=r"'mnv2-split' external data 'weights-2.bin'"):
        zoo.pull("mnv2-split")
    assert parts["weights-2.bin"]["sha256"] not in ModelCache(zoo_env).shas()
    assert not (zoo_env / "bundles").exists() or list((zoo_env / "bundles").iterdir()) == []


def test_a_graph_naming_a_file_its_entry_does_not_declare_is_refused(split_model, server, zoo_env, write_registry):
    graph = split_model.read_bytes()
    one = {"weights-1.bin": _pinned(split_model.parent / "weights-1.bin", server.add("/w1", b"unused"))}
    write_registry(entry("half", graph, [server.add("/half.onnx", graph)], external_data=one))
    with pytest.raises(InvalidModelError, match=r"external file 'weights-2.bin' that the registry entry does not declare"):
        zoo.pull("half")
    assert ModelCache(zoo_env).shas() == []


@pytest.mark.parametrize("location", ["../weights.bin", "sub/weights.bin", ".hidden", "model.onnx"])
def test_an_external_data_location_must_be_a_plain_file_name(location, split_model, zoo_env, write_registry):
    graph = split_model.read_bytes()
    bad = {location: {"sha256": "0" * 64, "bytes": 1, "sources": ["https://example.org/w"]}}
    write_registry(entry("bad", graph, ["https://example.org/m.onnx"], external_data=bad))
    with pytest.raises(RegistryError, match="external_data"):
        zoo.info("bad")


def test_a_tampered_bundle_is_quarantined_and_rebuilt(served_split, zoo_env):
    path = zoo.pull("mnv2-split")
    folder = path.parent
    (folder / "weights-1.bin").unlink()
    (folder / "weights-1.bin").write_bytes(b"planted")  # a different file under the declared name
    os.symlink("/etc/passwd", folder / "extra")
    assert zoo.pull("mnv2-split") == path
    assert sorted(os.listdir(folder)) == ["model.onnx", *PARTS] and _same_files(folder, zoo_env)
    assert [q.name.split(".")[0] for q in (zoo_env / "quarantine").iterdir()] == [folder.name]


def test_add_pins_a_local_multi_file_model_and_a_mirror_carries_every_file(split_model, zoo_env, tmp_path, monkeypatch):
    added = zoo.add(split_model, name="local-split", preprocess="imagenet")
    assert sorted(added.external_data) == list(PARTS)
    assert all(f["sources"] == [(split_model.parent / p).as_uri()] for p, f in added.external_data.items())
    shown = zoo_cmd("info", "local-split").stdout
    assert f"2 external data files, {added.total_bytes:,} bytes in all" in shown and "weights-2.bin: sha256" in shown
    shutil.rmtree(split_model.parent)  # the cache holds every file now
    path = zoo.pull("local-split")
    assert sorted(os.listdir(path.parent)) == ["model.onnx", *PARTS]

    mirror = tmp_path / "mirror"
    zoo.export_mirror(mirror, ["local-split"])
    assert sorted(os.listdir(mirror / "sha256")) == sorted([added.sha256, *(f["sha256"] for f in added.external_data.values())])
    registry = json.loads((mirror / "registry.json").read_text())
    assert registry["models"][0]["external_data"] == added.external_data

    air_gapped = tmp_path / "air-gapped"  # a fresh cache that reaches nothing but the mirror folder
    monkeypatch.setenv("ZOO_HOME", str(air_gapped))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_MIRRORS", mirror.as_uri())
    monkeypatch.setenv("ZOO_REGISTRY", str(mirror / "registry.json"))
    got = zoo.pull("local-split")
    assert got.parent == air_gapped / "bundles" / path.parent.name and _same_files(got.parent, air_gapped)


def test_a_local_multi_file_model_is_used_in_place_and_its_cut_adopts_the_files(split_model, zoo_env):
    cut = zoo.cut(str(split_model), 1)
    assert cut.parent.parent == zoo_env / "bundles"
    names = _same_files(cut.parent, zoo_env)
    for p in set(names) - {"model.onnx"}:
        assert names[p] == hashlib.sha256((split_model.parent / p).read_bytes()).hexdigest()
    x = np.random.default_rng(2).normal(size=(1, 3, 224, 224)).astype(np.float32)
    assert _outputs(cut, x).shape == (1, 1280)


def test_a_scratch_graph_finds_its_external_data_and_is_removed_after(split_model, mobilenet_bytes):
    x = np.random.default_rng(3).normal(size=(1, 3, 224, 224)).astype(np.float32)
    with bundles.scratch(split_model.read_bytes(), split_model, PARTS) as path:
        assert sorted(os.listdir(path.parent)) == ["model.onnx", *PARTS]
        np.testing.assert_array_equal(_outputs(path, x), _outputs(mobilenet_bytes, x))
    assert not path.parent.exists()


def test_shipped_multi_file_model_reaches_an_executor_with_no_route_to_it(served_split, zoo_env, spark, tmp_path):
    """shipModel for a model only the driver can reach: the graph and each weight file travel through
    Spark (SparkFiles), and the executor's cold node cache builds the bundle from them."""
    from zoo.cluster import delivery
    from zoo.config import settings
    from zoo.runtime import models

    spec, runnable = models.prepare("mnv2-split", 1)
    shipped = delivery.ship_model(spark, spec, runnable)
    node = tmp_path / "node-without-routes"
    cold = dataclasses.replace(  # no sources at all: only the shipped files can serve it
        shipped, sources=(), parts=tuple(dataclasses.replace(p, sources=()) for p in shipped.parts),
        settings=settings({**os.environ, "ZOO_HOME": str(node), "ZOO_OFFLINE": "1"}))
    got = spark.sparkContext.parallelize([0], 1).map(lambda _: str(models.obtain(cold))).collect()[0]
    assert got == str(node / "bundles" / runnable.parent.name / "model.onnx")
    assert _same_files(Path(got).parent, node) == _same_files(runnable.parent, zoo_env)


def test_prune_removes_a_bundle_left_half_built_by_a_dead_process(zoo_env):
    cache = ModelCache(zoo_env)
    cache.ensure_writable()
    old, fresh = cache.tmp_dir / f"{'a' * 64}.x.bundle", cache.tmp_dir / f"{'b' * 64}.y.bundle"
    for d in (old, fresh):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"links only")
    os.utime(old, (0, 0))
    assert cache.prune(stale=300).temp_files == 1
    assert not old.exists() and fresh.exists()  # a builder at work is left alone


def test_two_checkpoints_sharing_one_graph_file_never_share_a_bundle_or_a_session(split_model, server, zoo_env,
                                                                                  write_registry, spark):
    """A graph file does not pin its weights: fine-tuned checkpoints exported the same way have
    byte-identical graphs. Bundles, sessions and provenance are keyed by graph and weights together."""
    graph = split_model.read_bytes()
    tuned = bytearray((split_model.parent / "weights-2.bin").read_bytes())
    tuned[::7] = bytes((b + 3) % 256 for b in tuned[::7])  # int8 weights: any bytes are valid
    entries = []
    for name, w2 in (("base", (split_model.parent / "weights-2.bin").read_bytes()), ("tuned", bytes(tuned))):
        parts = {"weights-1.bin": _pinned(split_model.parent / "weights-1.bin", server.add(f"/{name}/w1", (split_model.parent / "weights-1.bin").read_bytes())),
                 "weights-2.bin": {"sha256": hashlib.sha256(w2).hexdigest(), "bytes": len(w2), "sources": [server.add(f"/{name}/w2", w2)]}}
        entries.append(entry(name, graph, [server.add(f"/{name}/g.onnx", graph)], preprocess=IMAGENET, external_data=parts))
    write_registry(*entries)
    base, tuned_path = zoo.pull("base"), zoo.pull("tuned")
    assert base.parent != tuned_path.parent and base.read_bytes() == tuned_path.read_bytes()

    photos = sorted(PHOTOS.glob("*.JPEG"))[:2] if PHOTOS.exists() else missing("the shared photos are not beside the checkout")
    df = spark.createDataFrame([(str(p), p.read_bytes()) for p in photos], "path string, content binary")
    out = {name: zoo.pipeline(name, cut=1, outputFormat="array").fit(df).transform(df) for name in ("base", "tuned")}
    a, b = ([np.array(r["features"]) for r in out[n].orderBy("path").collect()] for n in ("base", "tuned"))
    assert all(np.abs(x - y).max() > 1e-3 for x, y in zip(a, b)), "each checkpoint computed with its own weights"
    pa, pb = zoo.provenance(out["base"], "features"), zoo.provenance(out["tuned"], "features")
    assert pa["model_sha256"] == pb["model_sha256"] and pa["external_data_sha256"] != pb["external_data_sha256"]
    from zoo import lineage
    assert "external_data_sha256" in lineage.conflict(pa, pb)


def test_onnx_model_reads_an_intermediate_tensor_of_a_multi_file_model_and_refuses_to_embed_it(
        served_split, zoo_env, spark, mobilenet_bytes, tmp_path):
    from zoo.errors import ConfigError

    x = np.random.default_rng(4).normal(size=(2, 3 * 224 * 224)).astype(np.float32)
    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(x)], "id long, pixels array<float>")
    inner = "472_quantized"  # the cut-1 tensor: not a graph output, so the session gets an extra output
    rows = {}
    for model in ("mnv2-split", str(MOBILENET)):
        stage = zoo.stage("onnx_model", modelName=model, feedDict={"input": "pixels"}, fetchDict={"t": inner, "p": "output"})
        rows[model] = {r["id"]: (np.array(r["t"]), np.array(r["p"])) for r in stage.transform(df).collect()}
    for i in rows[str(MOBILENET)]:
        for got, want in zip(rows["mnv2-split"][i], rows[str(MOBILENET)][i]):
            np.testing.assert_array_equal(got, want)
    stage = zoo.stage("onnx_model", modelName="mnv2-split", feedDict={"input": "pixels"}, fetchDict={"p": "output"},
                      embedModel=True)
    with pytest.raises(ConfigError, match=r"'mnv2-split' keeps its weights in 2 external data files .*embedModel=False"):
        stage.write().save(str(tmp_path / "saved"))
