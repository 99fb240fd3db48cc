"""The one place sparkzoo reads its configuration from: environment variables.

Settings are read when an operation starts (not at import), so a Spark executor, a test or a
subprocess sees whatever environment it was given. Every variable is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from zoo.errors import ConfigError

DEFAULT_FSSPEC_SCHEMES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "hdfs", "webhdfs", "viewfs")
DEFAULT_HF_ENDPOINT = "https://huggingface.co"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


@dataclass(frozen=True)
class Settings:
    """A snapshot of sparkzoo's configuration. Build one with :func:`settings`."""

    home: Path
    registries: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    allow_http: frozenset[str] = frozenset()
    fsspec_schemes: frozenset[str] = frozenset(DEFAULT_FSSPEC_SCHEMES)
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 1.0
    lock_timeout: float = 900.0
    lock_stale: float = 120.0
    progress: bool | None = None
    disabled_plugins: frozenset[str] = field(default_factory=frozenset)
    plugins_autoload: bool = True
    cuda_device: int | None = None
    jvm_functions: bool = True

    def http_allowed(self, host: str) -> bool:
        """Plain http is refused unless the host is listed in ``ZOO_ALLOW_HTTP`` (or it is ``*``)."""
        return "*" in self.allow_http or host.lower() in self.allow_http


def split_locations(value: str) -> list[str]:
    """Split an ``os.pathsep``-separated list of paths and URLs.

    On POSIX the separator is ``:``, which URLs contain too, so ``https`` followed by ``//...``
    is glued back together: ``/a/r.json:https://host/r.json`` gives two entries.
    """
    parts = value.split(os.pathsep)
    out: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        while os.pathsep == ":" and _URL_SCHEME.match(part) and i + 1 < len(parts) and parts[i + 1].startswith("//"):
            i += 1
            part = f"{part}:{parts[i]}"
            # a port number ("host:8080/x") was split off too: glue it back
            while i + 1 < len(parts) and re.match(r"^\d+(/|$)", parts[i + 1]):
                i += 1
                part = f"{part}:{parts[i]}"
        if part.strip():
            out.append(part.strip())
        i += 1
    return out


def _split_list(value: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", value) if item]


def _flag(name: str, default: bool | None, env=os.environ) -> bool | None:
    raw = env.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    if low == "auto":
        return None
    raise ConfigError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def _number(name: str, default: float, *, minimum: float = 0.0, env=os.environ) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _device_id(name: str, env=os.environ) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"{name}={raw!r} is not a GPU number (0, 1, ...)")
    return int(raw)


def _mirror_url(value: str) -> str:
    """A ZOO_MIRRORS entry as a URL: an absolute folder path becomes ``file://`` (usable offline)."""
    if os.path.isabs(value) and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
        return Path(value).as_uri().rstrip("/")
    return value.rstrip("/")


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/zoo``, else ``~/.cache/zoo``."""
    xdg = (os.environ if env is None else env).get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "zoo"


def settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every ``ZOO_*`` variable now and return the resulting :class:`Settings`.

    ``env`` replaces ``os.environ``: an executor reads its own environment with the settings the
    driver forwarded filled in (see :mod:`zoo.cluster.forwarding`)."""
    env = os.environ if env is None else env
    home = Path(env["ZOO_HOME"]).expanduser() if env.get("ZOO_HOME") else default_home(env)
    schemes = env.get("ZOO_FSSPEC_SCHEMES")
    offline = _flag("ZOO_OFFLINE", False, env=env) or _flag("HF_HUB_OFFLINE", False, env=env)
    return Settings(
        home=home.absolute(),
        registries=tuple(split_locations(env.get("ZOO_REGISTRY", ""))),
        mirrors=tuple(_mirror_url(m) for m in _split_list(env.get("ZOO_MIRRORS", ""))),
        offline=bool(offline),
        allow_http=frozenset(h.lower() for h in _split_list(env.get("ZOO_ALLOW_HTTP", ""))),
        fsspec_schemes=frozenset(_split_list(schemes)) if schemes is not None else frozenset(DEFAULT_FSSPEC_SCHEMES),
        hf_endpoint=(env.get("ZOO_HF_ENDPOINT") or env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/"),
        timeout=_number("ZOO_TIMEOUT", 30.0, minimum=0.01, env=env),
        retries=int(_number("ZOO_RETRIES", 2, env=env)),
        backoff=_number("ZOO_BACKOFF", 1.0, env=env),
        lock_timeout=_number("ZOO_LOCK_TIMEOUT", 900.0, env=env),
        lock_stale=_number("ZOO_LOCK_STALE", 120.0, minimum=1.0, env=env),
        progress=_flag("ZOO_PROGRESS", None, env=env),
        disabled_plugins=frozenset(_split_list(env.get("ZOO_DISABLE_PLUGINS", ""))),
        plugins_autoload=bool(_flag("ZOO_PLUGINS_AUTOLOAD", True, env=env)),
        cuda_device=_device_id("ZOO_CUDA_DEVICE", env=env),
        jvm_functions=bool(_flag("ZOO_JVM_FUNCTIONS", True, env=env)),
    )
