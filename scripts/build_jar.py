"""Build zoo/runtime/jvm/sparkzoo-functions.jar from zoo/runtime/jvm/ZooFunctions.java.

    python scripts/build_jar.py [--out PATH]

Compiles with the JDK's ``javac --release 17`` (Spark 4's minimum Java) against the jars of the
installed PySpark, and writes a reproducible jar: entries sorted, timestamps fixed, plus
``META-INF/sparkzoo/source.sha256`` (the source's hash), which tests/test_jvm_functions.py checks
so that a changed source with a stale jar fails CI. The jar is committed because installing
sparkzoo must not need a JDK; run this after editing the Java source.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "zoo" / "runtime" / "jvm" / "ZooFunctions.java"
JAR = REPO / "zoo" / "runtime" / "jvm" / "sparkzoo-functions.jar"
HASH_ENTRY = "META-INF/sparkzoo/source.sha256"
# The Spark jars the source compiles against (prefixes of file names in pyspark/jars).
CLASSPATH = ("spark-catalyst_", "spark-sql-api_", "spark-mllib_", "spark-common-utils_", "spark-unsafe_",
             "scala-library-", "kryo")
_EPOCH = (2020, 1, 1, 0, 0, 0)


def source_hash(source: Path = SOURCE) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def build(out: Path = JAR, source: Path = SOURCE) -> Path:
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    classpath = [str(p) for p in sorted(jars.glob("*.jar")) if p.name.startswith(CLASSPATH)]
    javac = shutil.which("javac")
    if javac is None:
        raise SystemExit("javac not found: install a JDK (17 or newer) to build the jar")
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp)
        subprocess.run([javac, "--release", "17", "-nowarn", "-cp", ":".join(classpath), "-d", str(classes), str(source)],
                       check=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", _EPOCH), "Manifest-Version: 1.0\r\n\r\n")
            jar.writestr(zipfile.ZipInfo(HASH_ENTRY, _EPOCH), source_hash(source) + "\n")
            for path in sorted(classes.rglob("*.class")):
                info = zipfile.ZipInfo(path.relative_to(classes).as_posix(), _EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                jar.writestr(info, path.read_bytes())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=JAR)
    args = parser.parse_args()
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
