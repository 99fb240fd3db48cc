"""sparkzoo's JVM functions: what Spark SQL cannot do fast, served from a small jar we ship.

Spark ML's ``array_to_vector`` is a Scala UDF over ``Seq[Double]``: each element of a 2048-wide
feature array is boxed and unboxed on its way into the vector, which costs more than everything
else a vector assembler does. ``zoo/runtime/jvm/sparkzoo-functions.jar`` (source next to it, built by
``scripts/build_jar.py``) holds a Spark V2 function catalog with ``dense_vector(array<double>)``,
which wraps the array into Spark ML's vector layout without touching its elements.

The jar is optional. On first use in a session sparkzoo registers the catalog under the name
``sparkzoo`` (``spark.sql.catalog.sparkzoo``, a runtime setting), adds the jar with ``ADD JAR``
when the session was not started with it (``spark.jars``), and proves the function on one row
(started with it, resolving the function on the driver is proof enough: no job).
If any of that fails (an older Spark, a remote Spark Connect server that cannot read the jar's
path, a catalog of that name already taken, ``ZOO_JVM_FUNCTIONS=0``) stages use Spark's own
``array_to_vector``: same vectors, slower.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from zoo.config import settings
from zoo.log import get_logger

CATALOG = "sparkzoo"
CATALOG_CLASS = "org.sparkzoo.spark.ZooFunctions"
JAR = Path(__file__).parent / "jvm" / "sparkzoo-functions.jar"
SOURCE = Path(__file__).parent / "jvm" / "ZooFunctions.java"

log = get_logger(__name__)


def spark_jar() -> Path:
    """The jar with sparkzoo's Spark SQL functions, for ``spark.jars`` where it must be loaded up
    front (a Spark Connect server, a driver that forbids ``ADD JAR``). Public as ``zoo.spark_jar``."""
    return JAR


_lock = threading.Lock()
_usable: "weakref.WeakKeyDictionary[SparkSession, bool]" = weakref.WeakKeyDictionary()


def to_vector(spark: SparkSession, column: Column) -> Column:
    """``column`` (an array of numbers) as a dense ML vector column: the jar's ``dense_vector``
    where this session can use it, else Spark's ``array_to_vector``. Null arrays give null (Spark's
    function alone fails on them with a NullPointerException)."""
    if available(spark):
        return F.call_function(f"{CATALOG}.dense_vector", column.cast("array<double>"))
    from pyspark.ml.functions import array_to_vector

    return F.when(column.isNotNull(), array_to_vector(column))


def available(spark: SparkSession) -> bool:
    """Whether ``spark`` runs the jar's functions (probed once per session, unless switched off)."""
    if not settings().jvm_functions:
        return False
    with _lock:
        if spark not in _usable:
            _usable[spark] = _enable(spark)
        return _usable[spark]


def _enable(spark: SparkSession) -> bool:
    key = f"spark.sql.catalog.{CATALOG}"
    current = spark.conf.get(key, None)
    if current not in (None, CATALOG_CLASS):
        log.warning("%s is %s, not sparkzoo's functions: using Spark's array_to_vector (slower)", key, current)
        return False
    spark.conf.set(key, CATALOG_CLASS)
    if _started_with_jar(spark) and _resolves(spark):  # spark.jars gives every executor the jar: no job to prove it
        log.debug("sparkzoo JVM functions usable (as started): spark.jars holds the jar and the driver resolves them")
        return True
    if _works(spark, "as started"):
        return True
    try:
        spark.sql(f"ADD JAR '{_sql_string(JAR)}'")
    except Exception as exc:  # e.g. a remote server that cannot read the path
        log.debug("ADD JAR %s failed: %s", JAR, _first_line(exc))
    else:
        if _works(spark, "after ADD JAR"):
            return True
    if current is None:
        spark.conf.unset(key)
    log.info("sparkzoo's JVM functions are not usable in this session: vectors are built with Spark's "
             "array_to_vector (slower; start Spark with spark.jars=%s to use them)", JAR)
    return False


def _started_with_jar(spark: SparkSession) -> bool:
    try:
        jars = spark.sparkContext.getConf().get("spark.jars", "") or ""
    except Exception:  # Spark Connect
        return False
    return any(Path(j.removeprefix("file:")).name == JAR.name for j in jars.split(",") if j)


def _resolves(spark: SparkSession) -> bool:
    """Whether the driver resolves ``dense_vector`` (analysis only: loads the catalog class, runs no job)."""
    probe = F.call_function(f"{CATALOG}.dense_vector", F.array(F.lit(1.5), F.lit(-2.0)))
    try:
        spark.range(1).select(probe.alias("v")).schema
    except Exception as exc:
        log.debug("sparkzoo JVM functions do not resolve: %s", _first_line(exc))
        return False
    return True


def _works(spark: SparkSession, when: str) -> bool:
    """Run ``dense_vector`` on one row, in a task, and check the vector it returns."""
    probe = F.call_function(f"{CATALOG}.dense_vector", F.array(F.lit(1.5), F.lit(-2.0)))
    try:
        row = spark.range(1).select(probe.alias("v")).first()
    except Exception as exc:  # class not found, analysis errors
        log.debug("sparkzoo JVM functions not usable %s: %s", when, _first_line(exc))
        return False
    ok = row is not None and row["v"] is not None and list(row["v"].toArray()) == [1.5, -2.0]
    if ok:
        log.debug("sparkzoo JVM functions usable (%s)", when)
    return ok


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _sql_string(path: Path) -> str:
    return str(path).replace("\\", "\\\\").replace("'", "\\'")
