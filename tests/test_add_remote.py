"""`zoo add hf://...` and `zoo add https://...`: the real huggingface_hub client against a loopback
server speaking the Hub's file API (tests/_hub.py), serving the real MobileNet v2 int8 and a
timm-style config.json; the entry is pinned (sha256, commit) and nothing is half-written on error."""

from __future__ import annotations

import json

import pytest

import zoo
from conftest import PHOTOS
from zoo.errors import ChecksumError, ModelNotFoundError, RegistryError
from zoo.hub.cache import model_cache
from zoo.hub.labels import shipped

from _hub import FakeHub

TIMM_CFG = {"architecture": "mobilenetv2_100", "num_classes": 1000, "license": "apache-2.0",
            "label_names": list(shipped("imagenet").labels),
            "pretrained_cfg": {"input_size": [3, 224, 224], "crop_pct": 0.875, "crop_mode": "center",
                               "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225]}}


@pytest.fixture
def hub(zoo_env, monkeypatch, tmp_path):
    server = FakeHub()
    monkeypatch.setenv("ZOO_HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token or cache of the machine's
    yield server
    server.close()


def _nothing_left(name: str) -> None:
    cache = model_cache()
    assert name not in {e.name for e in zoo.models()}, "no registry entry"
    assert not list(cache.tmp_dir.glob("add-*")), "no temporary download left"


def test_add_from_the_hub_pins_the_commit_and_reads_the_timm_config(spark, hub, mobilenet_bytes):
    commit = hub.publish("zoo-test/mnv2-timm", {"model.onnx": mobilenet_bytes, "config.json":
                                                json.dumps(TIMM_CFG).encode()})
    entry = zoo.add("hf://zoo-test/mnv2-timm/model.onnx", name="timm-mnv2")
    assert entry.sources == (f"hf://zoo-test/mnv2-timm/model.onnx@{commit}",), "pinned to the commit, not main"
    assert entry.preprocess["resize"] == {"mode": "shorter_side", "size": 256, "interpolation": "bilinear"}
    assert entry.preprocess["crop"] == {"mode": "center", "size": [224, 224]}
    assert entry.license == "apache-2.0" and entry.input["name"] == "input"
    assert entry.labels["sources"] == [f"hf://zoo-test/mnv2-timm/config.json@{commit}"]
    assert zoo.info("timm-mnv2")["label_set"]["count"] == 1000

    hub.publish("zoo-test/mnv2-timm", {"model.onnx": b"a newer, different file"})  # main moves on
    assert zoo.remove("timm-mnv2")
    assert zoo.pull("timm-mnv2").read_bytes() == mobilenet_bytes, "the pinned commit, whatever main is now"

    df = zoo.read_images(spark, str(PHOTOS), glob="n01[56]*.JPEG")
    rows = zoo.stage("image_classifier", modelName="timm-mnv2", k=1).transform(df).collect()
    direct = zoo.stage("image_classifier", modelName="timm-mnv2", labels="imagenet", k=1).transform(df).collect()
    assert [r["label"] for r in rows] == [r["label"] for r in direct] and rows[0]["label"] in TIMM_CFG["label_names"]


def test_what_the_hub_does_not_have_is_a_clear_error_and_nothing_is_written(hub, mobilenet_bytes):
    hub.publish("zoo-test/bare", {"model.onnx": mobilenet_bytes, "README.md": b"---\nlicense: mit\n---\n# bare\n"})
    with pytest.raises(ModelNotFoundError, match="cannot add model 'x1': hf://zoo-test/nope/model.onnx: no such repository"):
        zoo.add("hf://zoo-test/nope/model.onnx", name="x1")
    with pytest.raises(ModelNotFoundError, match="cannot add model 'x2': .*has no such file"):
        zoo.add("hf://zoo-test/bare/other.onnx", name="x2")
    with pytest.raises(ModelNotFoundError, match="cannot add model 'x3': .*no such revision; give a branch, tag or commit"):
        zoo.add("hf://zoo-test/bare/model.onnx@v9", name="x3")
    with pytest.raises(RegistryError, match=r"model 'x4': .* publishes no preprocessing .*read: README.md"):
        zoo.add("hf://zoo-test/bare/model.onnx", name="x4")
    for name in ("x1", "x2", "x3", "x4"):
        _nothing_left(name)
    entry = zoo.add("hf://zoo-test/bare/model.onnx", name="bare", preprocess="imagenet")
    assert entry.license == "mit", "the model card's licence"

    wrong = {**TIMM_CFG, "label_names": ["cat", "dog"]}
    hub.publish("zoo-test/mislabelled", {"model.onnx": mobilenet_bytes, "config.json": json.dumps(wrong).encode()})
    with pytest.raises(RegistryError, match="outputs 1000 scores per input but its label set .* has 2 names"):
        zoo.add("hf://zoo-test/mislabelled/model.onnx", name="x5")
    _nothing_left("x5")


def test_bytes_that_differ_from_what_the_hub_pins_are_refused(hub, mobilenet_bytes):
    commit = hub.publish("zoo-test/tampered", {"model.onnx": mobilenet_bytes, "config.json":
                                               json.dumps(TIMM_CFG).encode()})
    hub.served[("zoo-test/tampered", commit, "model.onnx")] = mobilenet_bytes[:-1] + b"\x00"
    with pytest.raises(ChecksumError, match="cannot add model 'tampered': .*the Hub says the file at commit .* nothing was added"):
        zoo.add("hf://zoo-test/tampered/model.onnx", name="tampered")
    _nothing_left("tampered")
    assert model_cache().lookup(__import__("hashlib").sha256(mobilenet_bytes).hexdigest(), None) is None


def test_add_from_an_https_url_needs_a_preprocess(server, zoo_env, mobilenet_bytes):
    url = server.add("/models/mnv2.onnx", mobilenet_bytes)  # 127.0.0.1 is in ZOO_ALLOW_HTTP for tests
    with pytest.raises(RegistryError, match="publishes no preprocessing"):
        zoo.add(url, name="web")
    _nothing_left("web")
    entry = zoo.add(url, name="web", preprocess="imagenet", labels="imagenet")
    assert entry.sources == (url,) and entry.labels == "imagenet"
    assert zoo.pull("web").read_bytes() == mobilenet_bytes


def test_an_entry_on_a_branch_that_moved_says_so_and_caches_nothing(hub, mobilenet_bytes, write_registry):
    """A registry entry pinned by sha256 but fetched from a branch: when the branch moves on, the pull is refused
    (the pin holds) and the error says what happened and what to do."""
    import hashlib

    from conftest import entry

    hub.publish("zoo-test/moving", {"model.onnx": mobilenet_bytes})
    write_registry(entry("moving", mobilenet_bytes, ["hf://zoo-test/moving/model.onnx@main"]))
    hub.publish("zoo-test/moving", {"model.onnx": mobilenet_bytes[:-1] + b"\x01"})  # main moves on
    with pytest.raises(ChecksumError, match=r"revision 'main' of zoo-test/moving is a branch or tag and may have moved "
                                            r"since the entry was pinned: point the source at the commit .*"
                                            r"hf://zoo-test/moving/model.onnx@<commit>"):
        zoo.pull("moving")
    assert model_cache().lookup(hashlib.sha256(mobilenet_bytes).hexdigest(), None) is None
