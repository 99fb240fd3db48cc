"""The ``ZOO_*`` settings a driver forwards to its executors.

Executors run in their node's environment, not the driver's: without forwarding, ``export
ZOO_MIRRORS=...`` before ``zoo featurize --master spark://...`` silently did nothing for them.
So the driver packs the settings that say *where models come from and how to fetch them* into
each job (they travel pickled with the model spec, not as Spark conf, so they need no
``spark.executorEnv`` and are not shown in the Spark UI), and an executor fills the gaps of its
own environment with them. A variable the node sets itself always wins: a worker's own
``ZOO_MIRRORS`` (a closer mirror) is never overridden.

Never forwarded: node-local paths, hardware and memory (``ZOO_HOME``, ``ZOO_CUDA_DEVICE``,
``ZOO_SESSION_CACHE_MB``), driver-only settings (registries, plugins, progress bars, JVM
functions) and credentials (``HF_TOKEN``: set ``spark.executorEnv.HF_TOKEN`` yourself where
executors need it).

``ZOO_FORWARD`` controls it: unset or ``1`` forwards :data:`FORWARDED`; ``0`` forwards nothing;
a comma-separated list forwards exactly those names (each must be one of :data:`FORWARDED`).
"""

from __future__ import annotations

import os
from typing import Mapping

from zoo.errors import ConfigError

#: Settings that describe how a model is fetched: safe and useful on every node.
FORWARDED: tuple[str, ...] = (
    "ZOO_MIRRORS", "ZOO_OFFLINE", "ZOO_ALLOW_HTTP", "ZOO_FSSPEC_SCHEMES", "ZOO_HF_ENDPOINT", "ZOO_TIMEOUT",
    "ZOO_RETRIES", "ZOO_BACKOFF", "ZOO_LOCK_TIMEOUT", "ZOO_LOCK_STALE",
)


def _chosen(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("ZOO_FORWARD", "").strip()
    if raw.lower() in ("", "1", "true", "yes", "on"):
        return FORWARDED
    if raw.lower() in ("0", "false", "no", "off", "none"):
        return ()
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in FORWARDED]
    if unknown:
        raise ConfigError(f"ZOO_FORWARD names {', '.join(unknown)}, which sparkzoo never forwards; "
                          f"choose from {', '.join(FORWARDED)} (or 0 for none)")
    return names


def forwarded_env(env: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs this driver forwards: the chosen names it has set."""
    env = os.environ if env is None else env
    return tuple((name, env[name]) for name in _chosen(env) if name in env)


def executor_env(forwarded: tuple[tuple[str, str], ...], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """An executor's environment with the driver's forwarded settings filling its gaps."""
    env = os.environ if env is None else env
    return {**dict(forwarded), **env}


def origin_of(name: str, forwarded: tuple[tuple[str, str], ...], env: Mapping[str, str] | None = None) -> str:
    """Where an executor's value of ``name`` came from, for messages."""
    env = os.environ if env is None else env
    if name in env:
        return f"{name}={env[name]!r} (this node's environment)"
    value = dict(forwarded).get(name)
    return f"{name}={value!r} (forwarded from the driver)" if value is not None else f"{name} is not set"
