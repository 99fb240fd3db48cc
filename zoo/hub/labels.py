"""Label sets: the class names a classifier's outputs stand for, pinned by sha256 like models.

A registry entry's ``labels`` is ``null``, the name of a set shipped with sparkzoo (``imagenet``:
the 1,000 ImageNet-1k classes with human-readable names, in the standard index order), or a file
``{"sha256": ..., "sources": [...]}`` fetched through the cache like a model. A stage's ``labels``
param may also name a local file. A label file is one name per line, a JSON list of names, a
JSON object ``{"0": "tench", ...}``, or a model's ``config.json`` holding one (timm's
``label_names``, the ``id2label`` of Hugging Face transformers).
Every file is hostile until parsed: its size and its count of names are bounded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from zoo.config import Settings
from zoo.config import settings as current_settings
from zoo.errors import ChecksumError, ModelNotFoundError, RegistryError

# name -> (file in zoo/hub/labelsets, its sha256); aliases share the entry
SHIPPED: dict[str, tuple[str, str]] = {
    "imagenet": ("imagenet-1k.txt", "e697a491aa735cc6c2aaf982f8e86e8fc7b0a1ea7750a2cc6a2bdfc1e109012f"),
    # detectors: COCO's 80 classes in training order (YOLO, YOLOX, SSD-ResNet34 after its offset), COCO's 91
    # category ids with 'N/A' at the ten unused ids (TF Object Detection API, torchvision), Pascal VOC's 20,
    # and a face detector's (background, face)
    "coco-80": ("coco-80.txt", "bd17f1ee35d5f3c862a4894605855abbb9dda4b0621fdb0ac4c2c8c7bb7e730a"),
    "coco-91": ("coco-91.txt", "fdfc5be993842af86b0386414458faeebbe6df751c0d442c2a08fb642d599031"),
    "voc-20": ("voc-20.txt", "f14861775969fd006b382e005f96dc811ef062ea4a37356efb70d7775e90f743"),
    "face": ("face.txt", "4906796f240d09d35ca93217806fa4ecbb150f976f58dc1cde1bca45986bc18a"),
}
SHIPPED["imagenet-1k"] = SHIPPED["imagenet"]
SHIPPED["coco"] = SHIPPED["coco-80"]
MAX_BYTES = 16 << 20
MAX_LABELS = 1_000_000


@dataclass(frozen=True)
class LabelSet:
    """Class names in the model's output order, and where they came from."""

    name: str  # a shipped set's name, or the file's
    sha256: str
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "count": len(self.labels), "first": list(self.labels[:5])}


def parse(data: bytes, where: str) -> tuple[str, ...]:
    """The names in a label file's bytes (see the module documentation); RegistryError naming ``where``."""
    if len(data) > MAX_BYTES:
        raise RegistryError(f"label file {where} is {len(data):,} bytes; label files are at most {MAX_BYTES:,}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"label file {where} is not UTF-8 text: {exc}") from None
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"label file {where} is not valid JSON: {exc}") from None
        if isinstance(value, dict):  # a model's config.json (timm label_names, transformers id2label) or id2label
            cfg = value.get("pretrained_cfg") if isinstance(value.get("pretrained_cfg"), dict) else {}
            value = value.get("label_names") or cfg.get("label_names") or value.get("id2label") or \
                cfg.get("id2label") or value
        if isinstance(value, dict):  # id2label: {"0": "tench", ...}
            try:
                indexed = sorted((int(k), v) for k, v in value.items())
            except (TypeError, ValueError):
                raise RegistryError(f"label file {where}: a JSON object must map class indices to names") from None
            if [i for i, _ in indexed] != list(range(len(indexed))):
                raise RegistryError(f"label file {where}: the class indices are not 0..{len(indexed) - 1}")
            value = [v for _, v in indexed]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RegistryError(f"label file {where}: expected a list of names")
        names = value
    else:
        names = text.splitlines()
        while names and not names[-1].strip():
            names.pop()
        names = [n.strip() for n in names]
    if not names:
        raise RegistryError(f"label file {where} holds no names")
    if len(names) > MAX_LABELS:
        raise RegistryError(f"label file {where} holds {len(names):,} names; at most {MAX_LABELS:,}")
    return tuple(names)


def shipped(name: str) -> LabelSet:
    """A label set shipped with sparkzoo; its bytes are checked against the pinned sha256."""
    if name not in SHIPPED:
        raise RegistryError(f"unknown label set {name!r}; shipped sets: {', '.join(sorted(SHIPPED))} (or give a label "
                            "file: one name per line, a JSON list, or an id2label object)")
    filename, sha = SHIPPED[name]
    data = (files("zoo.hub") / "labelsets" / filename).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise ChecksumError(f"the shipped label set {name!r} does not match its pinned sha256 {sha}: the installation "
                            "is damaged; reinstall sparkzoo")
    return LabelSet(name, sha, parse(data, filename))


def from_file(path: str | Path, sha256: str | None = None) -> LabelSet:
    """A label file on this machine (``sha256``, when given, must match)."""
    from zoo.hub.refs import parse as parse_ref

    ref = parse_ref(str(path))
    location = ref.path if ref.kind == "path" else Path(str(path)).expanduser()
    try:
        with open(location, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read label file {str(path)!r}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise ChecksumError(f"label file {str(path)!r} hashes to {digest}, not the pinned {sha256}")
    return LabelSet(location.name, digest, parse(data, repr(str(path))))


def pinned(spec: dict[str, Any], model: str, settings: Settings | None = None) -> LabelSet:
    """A registry entry's label file ``{"sha256": ..., "sources": [...]}``, fetched through the cache."""
    from zoo.hub.sidecars import fetch

    sha = spec["sha256"]
    path = fetch(spec, f"the labels of {model!r}", settings)
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    return LabelSet(spec.get("name") or f"{model} labels", sha, parse(data, f"of model {model!r} ({path})"))


def for_entry(entry: Any, settings: Settings | None = None) -> LabelSet | None:
    """The label set of a registry entry (None when it has none)."""
    if entry.labels is None:
        return None
    if isinstance(entry.labels, str):
        try:
            return shipped(entry.labels)
        except RegistryError as exc:
            raise RegistryError(f"model {entry.name!r}: {exc}") from None
    return pinned(entry.labels, entry.name, settings)


def for_model(model: str, settings: Settings | None = None) -> LabelSet | None:
    """The label set the registry gives ``model`` (a name, alias or sha256), or None when it has none
    (or no registry entry names the model, e.g. a file path)."""
    from zoo.hub import registry
    from zoo.hub.refs import parse as parse_ref

    s = settings or current_settings()
    ref = parse_ref(model)
    if ref.kind == "path":
        return None
    entry = registry.load(s).get(ref.text if ref.kind == "name" else ref.value)
    return None if entry is None else for_entry(entry, s)


def resolve(value: str, model: str, settings: Settings | None = None) -> LabelSet:
    """A stage's ``labels`` param: '' for the registry's set of ``model``, a shipped set's name, or a file."""
    if not value:
        found = for_model(model, settings)
        if found is None:
            raise RegistryError(f"model {model!r} has no label set in the registry; set labels to a shipped set "
                                f"({', '.join(sorted(SHIPPED))}) or a label file (one name per line)")
        return found
    if value in SHIPPED:
        return shipped(value)
    from zoo.hub.refs import parse as parse_ref

    ref = parse_ref(value)  # a path, a file: URI, or a bare file name in the working folder
    if not (ref.path if ref.kind == "path" else Path(value).expanduser()).is_file():
        raise RegistryError(f"labels {value!r} is neither a shipped label set ({', '.join(sorted(SHIPPED))}) nor a "
                            "label file on this machine")
    return from_file(value)


def describe(entry: Any, cache: Any) -> dict[str, Any] | None:
    """What ``zoo info`` shows of an entry's label set, without downloading anything."""
    spec = entry.labels
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            return shipped(spec).to_dict()
        except RegistryError as exc:
            return {"name": spec, "error": str(exc)}
    path = cache.lookup(spec["sha256"], spec.get("bytes"))
    if path is None:
        return {"name": spec.get("name"), "sha256": spec["sha256"], "sources": list(spec["sources"]), "cached": False}
    return {**pinned(spec, entry.name).to_dict(), "cached": True}

