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


def quiet_spark(spark) -> None:
    """Keep Spark's own JVM logs and PySpark's query-error logger to what matters: sparkzoo reports
    failures itself (the CLI's one-line errors, the kit's per-check report), and Spark's stack traces
    of the same failures would bury them."""
    spark.sparkContext.setLogLevel("FATAL")
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
