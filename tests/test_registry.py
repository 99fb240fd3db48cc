"""Registries: the built-in one, validation errors, merging, ZOO_REGISTRY URLs, plugins."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import pytest

import zoo
from conftest import MOBILENET_SHA, SHARED, entry, missing
from zoo.hub import registry
from zoo.config import split_locations
from zoo.errors import OfflineError, RegistryError, UnsafePathError

REQUIRED = [
    "resnet50-v1-12", "resnet50-v1-12-int8", "resnet18-v1-7", "resnet101-v1-7", "mobilenetv2-12",
    "mobilenetv2-12-int8", "squeezenet1.1-7", "densenet-12", "vgg16-12", "shufflenet-v2-12", "efficientnet-lite4-11",
]


def test_builtin_registry_pins_the_real_upstream_checksums(zoo_env):
    manifest_path = SHARED / "reference" / "onnx-model-zoo-classification-manifest.json"
    if not manifest_path.exists():
        missing("shared reference manifest absent")
    manifest = {m["model_path"].rsplit("/", 1)[1][:-5]: m["metadata"] for m in json.loads(manifest_path.read_text())}
    entries = {e.name: e for e in zoo.models()}
    assert set(REQUIRED) <= set(entries)
    for name in REQUIRED:
        e = entries[name]
        assert (e.sha256, e.bytes) == (manifest[name]["model_sha"], manifest[name]["model_bytes"]), name
        assert e.sources[0] == f"hf://onnxmodelzoo/{name}/{name}.onnx@main"
        assert e.sources[1].startswith("https://github.com/onnx/models/raw/main/validated/")
    assert zoo.info("resnet50")["name"] == "resnet50-v1-12"
    assert entries["efficientnet-lite4-11"].input["layout"] == "NHWC"
    assert entries["efficientnet-lite4-11"].preprocess["mean"] == [127.0, 127.0, 127.0]
    assert entries["mobilenetv2-12-int8"].preprocess["color_order"] == "RGB"


def test_the_catalogue_holds_every_model_of_the_onnx_model_zoo_with_its_task(zoo_env):
    """All 184 manifest entries, pinned to their real sha256 and size, each with a task; the families a
    sparkzoo image stage runs carry their preprocessing (ArcFace as a feature extractor among them)."""
    import sys

    manifest_path = SHARED / "reference" / "onnx-model-zoo-manifest.json"
    if not manifest_path.exists():
        missing("shared reference manifest absent")
    manifest = {Path(m["model_path"]).stem: m for m in json.loads(manifest_path.read_text())}
    entries = {e.name: e for e in zoo.models()}
    assert set(manifest) <= set(entries) and len(manifest) == 184
    for stem, m in manifest.items():
        e = entries[stem]
        assert (e.sha256, e.bytes) == (m["metadata"]["model_sha"], m["metadata"]["model_bytes"]), stem
        assert e.preprocess is None or e.input is not None, stem
    tasks = {e.task for e in entries.values()}
    assert {"image-classification", "object-detection", "image-segmentation", "feature-extraction",
            "text-classification", "question-answering", "text-generation", "style-transfer", "super-resolution"} <= tasks
    arcface = entries["arcfaceresnet100-8"]
    assert arcface.task == "feature-extraction" and arcface.preprocess["resize"]["size"] == [112, 112]
    assert arcface.labels is None
    detectors = [e for e in entries.values() if e.task == "object-detection"]
    assert len(detectors) == 24 and all(e.detection and e.preprocess and e.labels for e in detectors)  # all run
    assert entries["yolov3-10"].detection["family"] == "yolov3_nms" and entries["yolov3-10"].labels == "coco-80"
    assert entries["fcn-resnet50-11"].task == "image-segmentation" and entries["fcn-resnet50-11"].preprocess is None
    assert entries["roberta-sequence-classification-9"].task == "text-classification"
    assert entries["MaskRCNN-12"].task == "image-segmentation" and entries["bertsquad-10"].input is None
    assert sum(e.preprocess is not None for e in entries.values()) >= 40
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from build_registry import build

    shipped = json.loads(resources.files("zoo.hub").joinpath("registry.json").read_text())
    assert build(list(manifest.values())) == shipped, "registry.json is what scripts/build_registry.py makes"


def test_zoo_ls_filters_by_task_words_licence_and_size(zoo_env):
    from test_cli import zoo_cmd

    def names(*args: str) -> list[dict]:
        return json.loads(zoo_cmd("ls", "--json", *args).stdout)

    detection = names("--task", "object-detection")
    assert detection and {e["task"] for e in detection} == {"object-detection"}
    assert "yolov3-10" in {e["name"] for e in detection}
    found = names("--search", "ResNet", "INT8")
    assert found and all("resnet" in (e["name"] + e["description"]).lower() for e in found)
    assert all("int8" in (e["name"] + e["description"]).lower() for e in found)
    assert {e["license"] for e in names("--license", "mit")} == {"MIT"}
    small = names("--max-size", "5MB", "--task", "image-classification")
    assert small and all(e["bytes"] <= 5 * 2**20 for e in small)
    assert all(e["bytes"] > 5 * 2**20 for e in names("--task", "image-classification") if e not in small)
    done = zoo_cmd("ls", "--task", "detection", check=2)
    assert "unknown task 'detection'; tasks: image-classification, object-detection" in done.stderr
    assert "is not a size" in zoo_cmd("ls", "--max-size", "big", check=2).stderr


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/b", "..", "C:\\\\x", "\\\\\\\\srv\\\\share", "a..b", "a:b", ""])
def test_names_that_could_escape_the_cache_are_rejected(zoo_env, write_registry, bad):
    write_registry(entry(bad, b"x", ["https://example.org/x.onnx"]))
    with pytest.raises(RegistryError, match="invalid|does not match"):
        zoo.models()


def test_aliases_and_file_sources_are_checked_too(zoo_env, write_registry):
    write_registry(entry("ok", b"x", ["https://example.org/x"], aliases=["../up"]))
    with pytest.raises(RegistryError, match="aliases"):
        zoo.models()


def test_relative_file_source_is_rejected(zoo_env, tmp_path):
    doc = {"schema_version": 1, "models": [entry("ok", b"x", ["file://relative/x.onnx"])]}
    with pytest.raises(UnsafePathError, match="absolute file:///path"):
        registry.parse_document(doc, "t.json")


def test_schema_errors_name_the_registry_the_entry_and_the_field(zoo_env, write_registry):
    bad = entry("broken", b"x", ["https://example.org/x"])
    bad["sha256"] = "not-a-sha"
    del bad["license"]
    path = write_registry(entry("fine", b"y", ["https://example.org/y"]), bad)
    with pytest.raises(RegistryError) as info:
        zoo.models()
    message = str(info.value)
    assert str(path) in message
    assert "model 'broken' (models[1]) field 'sha256'" in message
    assert "'license' is a required property" in message


def test_duplicate_names_in_one_registry_are_an_error(zoo_env, write_registry):
    write_registry(entry("twin", b"x", []), entry("other", b"y", [], aliases=["twin"]))
    with pytest.raises(RegistryError, match="'twin' is used by both 'twin' and 'other'"):
        zoo.models()


def test_later_registries_win_on_names_and_aliases(zoo_env, write_registry):
    write_registry(entry("mine", b"first", []), entry("resnet50-custom", b"r", [], aliases=["resnet50"]))
    write_registry(entry("mine", b"second", []))
    assert zoo.info("mine")["bytes"] == len(b"second")
    assert zoo.info("resnet50")["name"] == "resnet50-custom"
    assert "resnet50" not in zoo.info("resnet50-v1-12")["aliases"]


def test_split_locations_keeps_urls_whole():
    value = os.pathsep.join(["/a/r.json", "https://host:8443/r.json", "file:///b/r.json"])
    assert split_locations(value) == ["/a/r.json", "https://host:8443/r.json", "file:///b/r.json"]


def test_registry_url_is_cached_for_offline_use(server, zoo_env, monkeypatch, mobilenet_bytes):
    doc = {"schema_version": 1, "models": [entry("remote", mobilenet_bytes, [server.url("/m.onnx")])]}
    server.add("/registry.json", json.dumps(doc).encode())
    monkeypatch.setenv("ZOO_REGISTRY", server.url("/registry.json"))
    assert zoo.info("remote")["sha256"] == MOBILENET_SHA
    server.close()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert zoo.info("remote")["origin"].endswith("(cached copy)")


def test_registry_url_never_fetched_is_an_offline_error(zoo_env, monkeypatch):
    monkeypatch.setenv("ZOO_REGISTRY", "https://registry.invalid/r.json")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="registry https://registry.invalid/r.json"):
        zoo.models()


def test_plugins_contribute_models_through_the_hook(zoo_env):
    from zoo.plugins.manager import manager

    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self):
            return [entry("from-plugin", b"p", ["https://example.org/p.onnx"])]

    plugin = Plugin()
    manager().register(plugin, name="test-plugin")
    try:
        assert zoo.info("from-plugin")["origin"] == "plugin test-plugin"
    finally:
        manager().unregister(plugin)
    with pytest.raises(zoo.errors.ModelNotFoundError):
        zoo.info("from-plugin")


def test_the_generated_schema_check_is_current_and_agrees_with_jsonschema(zoo_env, write_registry, mobilenet_bytes):
    """zoo/hub/_schema_check.py (fastjsonschema, the fast yes/no) must be regenerated with the schema, and
    must accept and refuse exactly what jsonschema does; the built-in registry, loaded without a
    schema check, must pass jsonschema."""
    import subprocess
    import sys

    from zoo.hub._schema_check import validate

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_schema_check.py"
    check = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    builtin = json.loads(resources.files("zoo.hub").joinpath("registry.json").read_text("utf-8"))
    assert list(registry._validator().iter_errors(builtin)) == []
    good = entry("ok", mobilenet_bytes, ["https://example.invalid/m.onnx"])
    bad_docs = [
        {"schema_version": 1, "models": [{**good, "sha256": "nothex"}]},
        {"schema_version": 1, "models": [{**good, "task": "juggling"}]},
        {"schema_version": 1, "models": [{**good, "bytes": -1}]},
        {"schema_version": 1, "models": [{**good, "sources": []}]},
        {"schema_version": 1, "models": [{**good, "input": {"name": "x"}}]},
        {"schema_version": 1, "models": [{**good, "extra": 1}]},
        {"schema_version": 2, "models": []},
        {"models": []},
    ]
    for doc in [builtin, {"schema_version": 1, "models": [good]}, *bad_docs]:
        detailed = list(registry._validator().iter_errors(doc))
        try:
            validate(doc)
            fast_ok = True
        except Exception:
            fast_ok = False
        assert fast_ok == (not detailed), (doc, detailed)
