"""The one exception hierarchy of sparkzoo.

Every error the library raises on purpose is a :class:`ZooError`. Messages say what went wrong,
name the model, file, URL or field involved, and say what to do next. The CLI maps each class to
an exit code (``exit_code``), documented in docs/cli.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class ZooError(Exception):
    """Base class of every sparkzoo error."""

    exit_code = 1


class ConfigError(ZooError):
    """An environment variable or argument has a value sparkzoo cannot use."""

    exit_code = 2


class RegistryError(ZooError):
    """A registry file is malformed, fails its schema, or cannot be read."""

    exit_code = 3


class UnsafePathError(RegistryError):
    """A name, path or URL would escape the cache or the model's directory."""


class ModelNotFoundError(ZooError, LookupError):
    """No registry knows the requested model name, alias or sha256."""

    exit_code = 4


class OfflineError(ZooError):
    """The model is not cached and ``ZOO_OFFLINE`` forbids touching the network."""

    exit_code = 5


class DownloadError(ZooError):
    """A single source failed, or every source of a model failed (see ``attempts``)."""

    exit_code = 6

    def __init__(self, message: str, attempts: list[Attempt] | None = None):
        super().__init__(message)
        self.attempts = attempts or []


class ChecksumError(DownloadError):
    """Bytes do not hash to the sha256 the registry pins."""

    exit_code = 7


class CacheError(ZooError):
    """The cache directory cannot be used (permissions, read-only, corrupt index)."""

    exit_code = 8


class InsufficientSpaceError(CacheError):
    """Not enough free space in the cache for the download; nothing was written."""


class CacheReadOnlyError(CacheError):
    """The cache is read-only and the request needs to write to it."""


@dataclass(frozen=True)
class Attempt:
    """One try of one source, kept so a final error can list every source and why it failed."""

    url: str
    reason: str

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class InvalidModelError(ZooError):
    """A model file is not a usable ONNX model (unparsable, no inputs, external data, ...)."""

    exit_code = 9


class ExternalDataError(InvalidModelError, UnsafePathError):
    """An ONNX file's tensors point at external data outside the model's own folder (or, for a
    cache blob, at any external file). Exit code 9, like every invalid model."""


class StageError(ZooError):
    """A pipeline stage was misconfigured or cannot be built (unknown name, bad parameter)."""

    exit_code = 10


class SchemaError(StageError):
    """A stage's input DataFrame does not fit it: missing column, wrong type, output-column clash."""


class CutError(InvalidModelError):
    """A layer cut cannot be made: index out of range, unknown tensor, or a cut model that fails validation."""


class ImageError(StageError):
    """An image cannot be decoded or preprocessed; the message names the file or row."""


class InputError(ZooError):
    """The input names no file to work on: a path that does not exist, or nothing matches (the
    message says what was searched and what is there)."""

    exit_code = 13


class DeviceError(ConfigError):
    """The requested execution device (e.g. ``cuda``) is not available to this task."""


def shown(value: object, limit: int = 100) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was: all an error message may
    echo of a value that came from a user or a registry (a 100,000-character name must not become
    200 KB of stderr)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def capped(message: str, limit: int = 4000) -> str:
    """A whole message cut to ``limit`` characters: the last guard before it is printed."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... (message cut: {len(message):,} characters in all)"


_JVM = ("org.", "java.", "javax.", "scala.", "py4j.")


def essence(exc: BaseException) -> str:
    """The informative line of an exception (what a report or the CLI shows of it).

    A Python worker's failure: the last line of its traceback (the error it raised). A JVM failure:
    the JVM exception itself, not py4j's first line ("An error occurred while calling
    o507.collectToPython."); it follows as ": org.apache...Exception: ...", the top one first."""
    lines = [re.sub(r"^(?::\s*|Caused by:\s*)", "", ln.strip()) for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.$]*(Error|Exception|Iteration)\b", ln)
              and not ln.endswith("Traceback (most recent call last):")]
    python = [ln for ln in errors if not ln.startswith(_JVM)]
    if python:
        return python[-1][:300]
    # the JVM's root cause ("Caused by: ..." last) says what went wrong; the top line is Spark's
    # wrapper ("Job aborted due to stage failure: ..."), which Spark 3.5 cuts before the cause
    causes = [re.sub(r"^Caused by:\s*", "", ln.strip()) for ln in str(exc).splitlines()
              if ln.strip().startswith("Caused by:") and ln.strip()[len("Caused by:"):].strip().startswith(_JVM)]
    if causes:
        return causes[-1][:300]
    return (errors[0] if errors else lines[0] if lines else "")[:300]
