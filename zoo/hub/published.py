"""What a source publishes with a model, for ``zoo add URL``: the file, downloaded once into the
cache's temporary folder, the revision it was found at (pinned, so the entry never follows a branch
that moves), and the metadata a Hugging Face repository carries beside it.

From the Hub (``hf://ORG/REPO/FILE.onnx[@REV]``, through the real ``huggingface_hub`` client against
``ZOO_HF_ENDPOINT``): a timm-style ``config.json`` (``pretrained_cfg``: input size, crop, mean/std,
interpolation; class names as ``label_names`` or ``id2label``; ``license``) and the licence of the
model card's front matter. An ``https://`` URL publishes only the file. Every metadata file is
bounded (:data:`METADATA_LIMIT`) and parsed as hostile input.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.config import Settings
from zoo.errors import ChecksumError, DownloadError, ModelNotFoundError, RegistryError
from zoo.hub import sources
from zoo.hub.cache import ModelCache, hash_file

METADATA_LIMIT = 1 << 20
_INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area",
                   "lanczos": "lanczos", "random": "bilinear"}


@dataclass
class Published:
    """A downloaded model file and what its source says about it."""

    path: Path  # the file, in a temporary folder of the cache (``discard`` removes it)
    source: str  # the source to pin in the registry: hf://...@<commit> or the URL
    preprocess: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None  # a registry ``labels`` spec (a pinned file)
    license: str | None = None
    found: tuple[str, ...] = ()  # the metadata files read

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("hf", "https", "http")


def fetch(url: str, cache: ModelCache, settings: Settings) -> Published:
    """Download the model at ``url`` and read what its source publishes (see the module documentation)."""
    cache.ensure_writable()
    cache.tmp_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="add-", dir=cache.tmp_dir))
    try:
        if urlsplit(url).scheme == "hf":
            return _from_hub(url, work, settings)
        return _from_url(url, work, settings)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _from_url(url: str, work: Path, settings: Settings) -> Published:
    try:
        sources.check_allowed(url, settings)
        stream = sources.open_stream(url, settings)
    except sources.SourceFailure as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from None
    target = work / (Path(urlsplit(url).path).name or "model.onnx")
    buf = bytearray(1 << 20)
    with open(target, "wb") as out:
        while True:
            n, error = stream.fill(memoryview(buf))
            out.write(buf[:n])
            if error is not None:
                raise DownloadError(f"cannot download {url}: {error}") from None
            if n == 0:
                break
    if stream.total is not None and target.stat().st_size != stream.total:
        raise DownloadError(f"cannot download {url}: {target.stat().st_size:,} of {stream.total:,} bytes arrived")
    return Published(target, url)


def _hub_errors(url: str):
    """A context turning huggingface_hub's errors into ours, naming ``url`` and what to do."""
    from contextlib import contextmanager

    from huggingface_hub import errors as hub

    @contextmanager
    def translated():
        try:
            yield
        except hub.RepositoryNotFoundError:
            raise ModelNotFoundError(f"{url}: no such repository on the Hub (or it is private: log in with "
                                     "`hf auth login`)") from None
        except hub.RevisionNotFoundError:
            raise ModelNotFoundError(f"{url}: no such revision; give a branch, tag or commit of the repository") from None
        except hub.EntryNotFoundError:
            raise ModelNotFoundError(f"{url}: the repository has no such file") from None
        except (hub.HfHubHTTPError, OSError) as exc:
            raise DownloadError(f"cannot download {url}: {exc}") from None

    return translated()


def _from_hub(url: str, work: Path, settings: Settings) -> Published:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    repo_id, filename, revision = sources.parse_hf(url)
    endpoint = settings.hf_endpoint
    try:
        sources.check_allowed(endpoint, settings)  # no plain http to the Hub (a token would travel with it)
    except sources.SourceFailure as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from None
    with _hub_errors(url):
        meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint))
    commit = meta.commit_hash or revision
    pinned = f"hf://{repo_id}/{filename}@{commit}"
    with _hub_errors(url):
        local = Path(hf_hub_download(repo_id, filename, revision=commit, endpoint=endpoint, cache_dir=work / "hf"))
    path = work / Path(filename).name
    shutil.move(local.resolve(), path)  # the client's snapshot entry is a link to its blob: move the blob
    if meta.etag and re.fullmatch(r"[0-9a-f]{64}", meta.etag):  # an LFS file: its ETag is its sha256
        digest = hash_file(path)
        if digest != meta.etag:
            raise ChecksumError(f"{url}: the downloaded bytes hash to {digest}, but the Hub says the file at commit "
                                f"{commit} is {meta.etag}; nothing was added")
    published = Published(path, pinned)
    config = _small_file(repo_id, "config.json", commit, endpoint, work)
    if config is not None:
        data, sha = config
        doc = _json(data, f"{repo_id}/config.json")
        published.found += ("config.json",)
        cfg = doc.get("pretrained_cfg") if isinstance(doc.get("pretrained_cfg"), dict) else doc
        published.preprocess = timm_preprocess(cfg, f"{repo_id}/config.json")
        if _has_labels(doc):
            published.labels = {"name": f"{repo_id} config.json", "sha256": sha, "bytes": len(data),
                                "sources": [f"hf://{repo_id}/config.json@{commit}"]}
        if isinstance(doc.get("license"), str):
            published.license = doc["license"]
    if published.license is None:
        card = _small_file(repo_id, "README.md", commit, endpoint, work)
        if card is not None:
            published.found += ("README.md",)
            published.license = card_license(card[0])
    return published


def _small_file(repo_id: str, filename: str, commit: str, endpoint: str, work: Path) -> tuple[bytes, str] | None:
    """(bytes, sha256) of a metadata file of the repository at ``commit``, or None when it has none."""
    import hashlib

    from huggingface_hub import errors as hub
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    url = f"hf://{repo_id}/{filename}@{commit}"
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=commit, endpoint=endpoint))
    except hub.EntryNotFoundError:
        return None
    except (hub.HfHubHTTPError, OSError) as exc:
        raise DownloadError(f"cannot read {url}: {exc}") from None
    if meta.size is not None and meta.size > METADATA_LIMIT:
        raise RegistryError(f"{url} is {meta.size:,} bytes; metadata files are read up to {METADATA_LIMIT:,}")
    with _hub_errors(url):
        local = hf_hub_download(repo_id, filename, revision=commit, endpoint=endpoint, cache_dir=work / "meta")
    with open(local, "rb") as fh:
        data = fh.read(METADATA_LIMIT + 1)
    if len(data) > METADATA_LIMIT:
        raise RegistryError(f"{url} is larger than {METADATA_LIMIT:,} bytes; refusing to parse it")
    return data, hashlib.sha256(data).hexdigest()


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RegistryError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{where} is not a JSON object")
    return doc


def _has_labels(doc: dict[str, Any]) -> bool:
    cfg = doc.get("pretrained_cfg") if isinstance(doc.get("pretrained_cfg"), dict) else {}
    return any(isinstance(d.get(k), (list, dict)) and d.get(k) for d in (doc, cfg) for k in ("label_names", "id2label"))


def timm_preprocess(cfg: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A registry preprocess recipe from a timm ``pretrained_cfg`` (None when it has no ``input_size``):
    shorter side to ``floor(size / crop_pct)``, centre crop, scale to [0, 1], mean/std, RGB."""
    size = cfg.get("input_size")
    if size is None:
        return None
    try:
        channels, height, width = (int(v) for v in size)
        crop_pct = float(cfg.get("crop_pct", 0.875))
        mean = [float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))]
        std = [float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))]
    except (TypeError, ValueError):
        raise RegistryError(f"{where}: pretrained_cfg has an input_size, crop_pct, mean or std that is not numbers")
    if channels not in (1, 3) or not (0 < crop_pct <= 1) or min(height, width) < 1 or len(mean) != channels \
            or len(std) != channels:
        raise RegistryError(f"{where}: pretrained_cfg describes an input sparkzoo cannot prepare ({size}, crop_pct "
                            f"{crop_pct}); give --preprocess")
    if cfg.get("crop_mode", "center") != "center":
        raise RegistryError(f"{where}: crop_mode {cfg.get('crop_mode')!r} is not supported; give --preprocess")
    return {"color_order": "RGB" if channels == 3 else "GRAY",
            "resize": {"mode": "shorter_side", "size": math.floor(min(height, width) / crop_pct),
                       "interpolation": _INTERPOLATIONS.get(str(cfg.get("interpolation", "bilinear")), "bilinear")},
            "crop": {"mode": "center", "size": [height, width]}, "scale": 1 / 255, "mean": mean, "std": std}


def card_license(data: bytes) -> str | None:
    """The ``license:`` of a model card's YAML front matter (a bounded, line-by-line read)."""
    text = data[:METADATA_LIMIT].decode("utf-8", "replace").splitlines()
    if not text or text[0].strip() != "---":
        return None
    for line in text[1:200]:
        if line.strip() == "---":
            return None
        m = re.fullmatch(r"license:\s*['\"]?([A-Za-z0-9.+_-]{1,64})['\"]?\s*", line)
        if m:
            return m[1]
    return None
