"""The one logging setup: a ``zoo`` logger that libraries leave alone and the CLI configures."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("zoo")
logger.addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """A child of the ``zoo`` logger, e.g. ``zoo.download``."""
    return logger.getChild(name)


def configure(level: str | int | None = None) -> None:
    """Send ``zoo`` log records to stderr at ``level`` (default ``ZOO_LOG_LEVEL``, else WARNING).

    Only the CLI calls this; as a library sparkzoo leaves handlers to the application.
    """
    level = level or os.environ.get("ZOO_LOG_LEVEL", "WARNING")
    if isinstance(level, str):
        level = level.upper()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("zoo: %(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def configured(target: logging.Logger = logger) -> bool:
    """Whether records of ``target`` reach a real handler (not only the library's NullHandler): the
    CLI's, or one the application set up (``logging.basicConfig()``, its own on ``zoo``)."""
    current: logging.Logger | None = target
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def warn_user(log: logging.Logger, message: str) -> None:
    """A warning the person running the job must see: through ``log`` where the application
    configured logging, else as one ``zoo: WARNING:`` line on stderr (a library's NullHandler would
    otherwise swallow it, and ``zoo.cluster.watch`` in a plain script would say nothing)."""
    if configured(log):
        log.warning(message)
    else:
        import sys

        print(f"zoo: WARNING: {message}", file=sys.stderr, flush=True)


def quiet_spark(spark) -> None:
    """Keep Spark's own JVM logs and PySpark's query-error logger to what matters: sparkzoo reports
    failures itself (the CLI's one-line errors, the kit's per-check report), and Spark's stack traces
    of the same failures would bury them."""
    spark.sparkContext.setLogLevel("FATAL")
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
