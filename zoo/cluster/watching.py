"""Watching a Spark action from the driver: what the executors did, said in sparkzoo's terms.

Spark reports an executor-side failure as a wrapped Python traceback after every retry, and
says nothing on the driver about tasks that failed and were retried, executors that were lost,
or where each node got its model. ``with zoo.cluster.watch(spark) as w:`` around an action
(and the ``transform`` that builds it) changes that:

- an executor-side :class:`~zoo.errors.ZooError` is raised again on the driver as the same
  class, with the executor's one-paragraph message (it names the node and what to change), so
  exit codes and ``except DownloadError`` work as they do locally; a Python on the executors
  that lacks sparkzoo becomes a :class:`~zoo.errors.ConfigError` that says how to ship one;
- each failed task attempt and each lost executor is reported once, in one line, to the
  ``zoo`` logger at WARNING (and kept in ``w.failures``);
- ``w.nodes`` lists, per node cache, where the model came from (node cache, shipped by the
  driver, downloaded from which mirror or source), reported by the executors through an
  accumulator.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

from zoo import errors
from zoo.log import get_logger, warn_user

log = get_logger("cluster")

_ACTIVE: list["Watch"] = []
_ZOO_LINE = re.compile(r"^zoo\.errors\.(\w+): (.*)$", re.M)
_NO_ZOO = re.compile(r"No module named '(zoo|pyarrow|onnxruntime|onnx|cv2|numpy|pluggy)'")  # sparkzoo and what it imports
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Failure|Exit))\b:?(.*)$", re.M)


@dataclass(frozen=True)
class NodeReport:
    """Where one node cache got one model."""

    host: str
    zoo_home: str
    model: str
    how: str

    def __str__(self) -> str:
        return f"node {self.host} (ZOO_HOME={self.zoo_home}): {self.model}: {self.how}"


def current_events():
    """The accumulator of the innermost active watch (for the specs built inside it), or None."""
    return _ACTIVE[-1].events if _ACTIVE else None


def _continuation(text: str, start: int) -> str:
    lines = []
    for line in text[start:].splitlines():
        if not line.strip() or line.startswith(("\t", " SQLSTATE", "JVM stacktrace")):
            break
        lines.append(line.strip())
    return " ".join(lines)


def executor_error(exc: BaseException, python: str | None = None) -> errors.ZooError | None:
    """The :class:`~zoo.errors.ZooError` an executor raised inside Spark's wrapped ``exc``, or None.

    ``python`` (the executors' interpreter, for the message) when a Python worker could not
    import sparkzoo or one of its native dependencies."""
    if isinstance(exc, errors.ZooError):
        return None
    text = str(exc)
    found = list(_ZOO_LINE.finditer(text))
    if found:
        last = found[-1]
        cls = getattr(errors, last.group(1), None)
        if isinstance(cls, type) and issubclass(cls, errors.ZooError):
            message = " ".join(p for p in (last.group(2).strip(), _continuation(text, last.end() + 1)) if p)
            out = cls(message)
            out.spark_exception = exc  # type: ignore[attr-defined]
            return out
    missing = _NO_ZOO.search(text)
    if missing:
        out = errors.ConfigError(
            f"the executors' Python ({python or 'python3 from their PATH'}) cannot import {missing.group(1)!r}: "
            "install sparkzoo into that Python on every node and point Spark at it (PYSPARK_PYTHON or "
            "--conf spark.pyspark.python=/path/on/the/nodes/bin/python), or ship an environment with the job: "
            "`zoo cluster-env env.tar.gz`, then spark-submit --archives env.tar.gz#env "
            "--conf spark.pyspark.python=./env/bin/python (docs/cluster.md)"
        )
        out.spark_exception = exc  # type: ignore[attr-defined]
        return out
    return None


def _reason(text: str) -> str:
    """One line for a task's error message: the last exception line of a Python traceback, else the first line."""
    zoo_line = list(_ZOO_LINE.finditer(text))
    if zoo_line:
        line = zoo_line[-1].group(0)
    else:
        python = [m.group(0) for m in _EXCEPTION_LINE.finditer(text) if not m.group(1).startswith(("org.", "java.", "py4j."))]
        line = python[-1] if python and "Traceback" in text else text.strip().splitlines()[0] if text.strip() else "?"
    return line if len(line) <= 160 else line[:157] + "..."


def executors_python(spark) -> str | None:
    try:
        return spark.sparkContext.pythonExec  # what PySpark hands the executors (PYSPARK_PYTHON, else python3)
    except Exception:
        return os.environ.get("PYSPARK_PYTHON")


class Watch:
    """See the module doc. Build one with :func:`watch`."""

    def __init__(self, spark, *, report: Callable[[str], None] | None = None, interval: float = 0.5):
        self.spark = spark
        self.report = report or (lambda line: warn_user(log, line))
        self.interval = interval
        self.failures: list[str] = []
        self.events: Any = None
        self._seen_tasks: set[int] = set()
        self._seen_executors: set[str] = set()
        self._jobs_before: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sc = None

    # -- what executors said ---------------------------------------------------------------------
    @property
    def nodes(self) -> list[NodeReport]:
        values = self.events.value if self.events is not None else []
        return sorted({NodeReport(*v) for v in values}, key=lambda r: (r.host, r.zoo_home, r.model, r.how))

    # -- polling Spark's status store ----------------------------------------------------------------
    def _scan(self) -> None:
        sc = self._sc
        tracker, store = sc.statusTracker(), sc._jsc.sc().statusStore()
        jobs = set(tracker.getJobIdsForGroup(None)) | set(tracker.getJobIdsForGroup(sc.getLocalProperty("spark.jobGroup.id")))
        for job in sorted(jobs - self._jobs_before):
            info = tracker.getJobInfo(job)
            for stage in (info.stageIds if info else ()):
                self._scan_stage(tracker, store, stage)
        executors = store.executorList(False)
        for i in range(executors.size()):
            e = executors.apply(i)
            if e.isActive() or e.id() in self._seen_executors:
                continue
            self._seen_executors.add(e.id())
            why = e.removeReason().get() if e.removeReason().isDefined() else "no reason given"
            self._say(f"executor {e.id()} on {e.hostPort()} was lost ({why}); Spark reruns its tasks elsewhere")

    def _scan_stage(self, tracker, store, stage: int) -> None:
        info = tracker.getStageInfo(stage)
        if info is None:
            return
        for attempt in range(info.currentAttemptId + 1):
            if attempt == info.currentAttemptId and not info.numFailedTasks:
                continue
            tasks = store.taskList(stage, attempt, 1 << 30)
            for i in range(tasks.size()):
                t = tasks.apply(i)
                if t.status() not in ("FAILED", "KILLED") or t.taskId() in self._seen_tasks:
                    continue
                self._seen_tasks.add(t.taskId())
                message = t.errorMessage().get() if t.errorMessage().isDefined() else t.status()
                self._say(f"task {t.index()} of stage {stage} (attempt {t.attempt() + 1}) failed on executor "
                          f"{t.executorId()} ({t.host()}): {_reason(message)}")

    def _say(self, line: str) -> None:
        self.failures.append(line)
        self.report(line)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._safe_scan()

    def _safe_scan(self) -> None:
        try:
            self._scan()
        except Exception as exc:  # a stopped context, a Spark without these APIs: reporting is best effort
            log.debug("task report scan failed: %s", exc)

    # -- the context manager -----------------------------------------------------------------------
    def __enter__(self) -> "Watch":
        try:
            self._sc = self.spark.sparkContext
        except Exception:  # Spark Connect: no SparkContext, no accumulators or status store here
            self._sc = None
        if self._sc is not None:
            from zoo.cluster.events import EventsParam

            self.events = self._sc.accumulator([], EventsParam())
            tracker = self._sc.statusTracker()
            self._jobs_before = set(tracker.getJobIdsForGroup(None))
            try:
                executors = self._sc._jsc.sc().statusStore().executorList(False)
                self._seen_executors = {executors.apply(i).id() for i in range(executors.size())
                                        if not executors.apply(i).isActive()}
            except Exception:
                pass
            self._thread = threading.Thread(target=self._run, name="zoo-watch", daemon=True)
            self._thread.start()
        _ACTIVE.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        _ACTIVE.remove(self)
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._safe_scan()  # what happened since the last poll
        if exc is not None and not isinstance(exc, errors.ZooError) and isinstance(exc, Exception):
            translated = executor_error(exc, executors_python(self.spark))
            if translated is not None:
                raise translated from None
        return False


def watch(spark, *, report: Callable[[str], None] | None = None) -> Watch:
    """A :class:`Watch` for the actions (and transforms) run inside ``with``: see the module doc.

    ``report`` receives each one-line failure report (default: the ``zoo`` logger at WARNING where the
    application configured logging, else one ``zoo: WARNING:`` line on stderr)."""
    return Watch(spark, report=report)
