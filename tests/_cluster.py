"""A real Spark standalone cluster on loopback: one master and N workers from the installed pyspark,
started with the very commands docs/cluster.md ("Running on a cluster") shows (its host, port, node
cache and size replaced by this machine's).

Each worker gets its own environment (in particular its own ``ZOO_HOME``), modelling separate
nodes; executors inherit their worker's environment. ``stop()`` terminates every process group
within a bounded time and kills what does not exit, so no process outlives the test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyspark

from zoo.testing import JVM_OPTIONS

SPARK_HOME = Path(pyspark.__file__).parent
README = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"  # the walkthrough users follow
README_HEAD = "10.0.0.1"


def readme_block(marker: str) -> list[str]:
    """The command lines (comments dropped) of the README's bash block that contains ``marker``."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"docs/cluster.md must have exactly one bash block with {marker!r}"
    return [line for line in found[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]


def readme_cluster_commands() -> tuple[list[str], str, str]:
    """(the exports, the master command, the worker command) of README's standalone-cluster block."""
    lines = readme_block("org.apache.spark.deploy.master.Master")
    exports = [line for line in lines if line.startswith("export ")]
    master = next(line for line in lines if "deploy.master.Master" in line)
    worker = next(line for line in lines if "deploy.worker.Worker" in line)
    assert len(exports) + 2 == len(lines), f"unexpected lines in README's cluster block: {lines}"
    return exports, master, worker


def bin_path() -> str:
    """PATH with this interpreter's environment first, as for a user who activated it."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    def __init__(self, folder: Path, worker_envs: list[dict[str, str]], *, cores: int = 1, memory: str = "1g"):
        self.folder, self.worker_envs, self.cores, self.memory = folder, worker_envs, cores, memory
        self.port = _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def _readme(self, line: str, home: str | None = None) -> str:
        """A README command line for this cluster: loopback, a free port, this node's cache and size."""
        line = line.replace(README_HEAD, "127.0.0.1").replace("7077", str(self.port))
        line = line.replace("--cores 8 --memory 16g", f"--cores {self.cores} --memory {self.memory}")
        return line.replace("ZOO_HOME=/local/ssd/zoo", f"ZOO_HOME={home}") if home else line

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> Path:
        log = self.folder / f"{name}.log"
        # the daemons and the executors they start: C1-only JIT too (zoo.testing.JVM_OPTIONS), through the
        # variable every JVM reads (its "Picked up" notice goes to their own logs, not a driver's stderr)
        full = {**os.environ, "PATH": bin_path(), "SPARK_LOG_DIR": str(self.folder),
                "SPARK_WORKER_DIR": str(self.folder / f"{name}-work"), "JAVA_TOOL_OPTIONS": JVM_OPTIONS, **env}
        exports, _, _ = readme_cluster_commands()
        script = "; ".join([*(self._readme(e) for e in exports), command])  # killed as a process group
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                    env=full, start_new_session=True)
        self.procs.append((proc, log))
        return log

    def _wait_for(self, log: Path, pattern: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, log.read_text(errors="replace")):
                return
            if any(p.poll() is not None for p, _ in self.procs):
                break
            time.sleep(0.2)
        raise RuntimeError(f"{log.name}: no {pattern!r} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")

    def start(self) -> "StandaloneCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            _, master_line, worker_line = readme_cluster_commands()
            master = self._spawn("master", f"{self._readme(master_line)} --webui-port {_free_port()}", {})
            self._wait_for(master, r"I have been elected leader|New state: ALIVE")
            for i, env in enumerate(self.worker_envs):
                env = dict(env)
                home = env.pop("ZOO_HOME")  # given the README's way, on the command line
                command = self._readme(worker_line, home).replace(" org.apache.spark.deploy.worker.Worker",
                                                                  f" org.apache.spark.deploy.worker.Worker --webui-port {_free_port()}")
                log = self._spawn(f"worker{i}", command, env)
                self._wait_for(log, r"Successfully registered with master")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, _ in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
