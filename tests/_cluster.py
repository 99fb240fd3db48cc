"""A real Spark standalone cluster on loopback: one master and N workers from the installed pyspark.

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
import time
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent


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

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Path:
        log = self.folder / f"{name}.log"
        full = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.folder), "SPARK_WORKER_DIR": str(self.folder / f"{name}-work"), **env}
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=out, stderr=subprocess.STDOUT,
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
            master = self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                                            str(self.port), "--webui-port", str(_free_port())], {})
            self._wait_for(master, r"I have been elected leader|New state: ALIVE")
            for i, env in enumerate(self.worker_envs):
                log = self._spawn(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                                 "--cores", str(self.cores), "--memory", self.memory,
                                                 "--webui-port", str(_free_port()), self.url], env)
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
