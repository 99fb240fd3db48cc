"""Incremental featurization: featurize only the files that are new or changed since the last run.

``zoo.featurize_incremental(spark, images, output, model)`` (and ``zoo featurize --incremental``)
keeps a parquet output in step with a folder of images:

- a file is unchanged when its path, size and modification time (or, ``by_content``, its content
  sha256) match a row of the previous output: that row is kept as it is;
- new and changed files are featurized; rows of files that are gone are dropped;
- when the features would not be comparable (the model, cut, output or preprocessing differ from
  what the previous output's provenance says, :mod:`zoo.lineage`) every file is featurized again,
  and the report says why.

The new output is written beside the old one and swapped in by two renames, so a failed or
interrupted run leaves the previous output as it was (a run that died between the two renames is
put back by the next one). A lock beside the output refuses a second run on it at the same time,
and an output folder that an incremental run did not write (no ``_zoo_featurize.json``) is refused
rather than overwritten. The output must be on a file system this machine can rename in (local or
shared POSIX); object stores are not supported yet.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import StageError

MARKER = "_zoo_featurize.json"  # Spark's readers skip names starting with "_"
KEYS = ("path", "modificationTime", "length")


class _Steps:
    """Seconds per step, logged (``zoo -v``): where an incremental run's time goes."""

    def __init__(self) -> None:
        from zoo.log import get_logger

        self.log, self.last = get_logger("incremental"), time.perf_counter()

    def done(self, what: str) -> None:
        now = time.perf_counter()
        self.log.info("%s in %.2f s", what, now - self.last)
        self.last = now


@dataclass(frozen=True)
class IncrementalReport:
    """What an incremental run did."""

    output: str
    found: int  # files in the input now
    kept: int  # rows carried over unchanged
    featurized: int  # new or changed files featurized in this run
    deleted: int  # rows dropped because their file is gone (or changed: its new row replaces it)
    full: bool  # every file was featurized (first run, or the features would not be comparable)
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _local(output: str) -> Path:
    parts = urlsplit(output)
    if parts.scheme not in ("", "file"):
        raise StageError(f"incremental featurization writes to a local or shared POSIX folder; {output!r} is on "
                         f"{parts.scheme}://, which cannot be swapped in atomically from here")
    return Path(parts.path if parts.scheme else output).expanduser().resolve()


def _recover(out: Path) -> None:
    """Put back a previous output that a run moved aside and died before replacing, then remove
    what dead runs left beside it (half-written new outputs, old outputs already replaced). Called
    with the output's lock held: no live run owns any of them."""
    graves = sorted(out.parent.glob(f".{out.name}.zoo-old-*"), key=lambda p: p.lstat().st_mtime)
    if graves and not out.exists():
        os.rename(graves.pop(), out)
    for left in [*graves, *out.parent.glob(f".{out.name}.zoo-new-*")]:
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
        else:
            left.unlink(missing_ok=True)


def _cores(spark: Any) -> int | None:
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect
        return None


def check_output(output: str) -> Path | None:
    """What an incremental run can write to ``output``: its marker when a previous incremental run
    wrote it, None when it does not exist yet. StageError for a folder another run wrote or one on a
    file system it cannot swap in (what ``zoo featurize --incremental`` checks before Spark starts)."""
    out = _local(output)
    if not out.exists():
        return None
    marker = out / MARKER
    if not marker.is_file():
        raise StageError(f"{output} exists but an incremental run did not write it (no {MARKER}); choose "
                         "another output, or remove it to start over")
    return marker


def featurize_incremental(spark: Any, images: Any, output: str, model: Any, *, by_content: bool = False,
                          features_col: str = "features") -> IncrementalReport:
    """Bring ``output`` up to date with ``images`` (``zoo.read_images`` rows) featurized by ``model``
    (a ``Pipeline`` fitted here, or a fitted ``PipelineModel``); see the module documentation."""
    from pyspark.ml import Pipeline
    from pyspark.sql import functions as F

    from zoo.config import settings
    from zoo.hub.fsutil import replace_folder
    from zoo.hub.locks import BlobLock, read_owner
    from zoo.lineage import conflict, of

    if by_content and "content" not in images.columns:
        raise StageError("featurize_incremental(by_content=True) hashes each file's bytes: read the images with "
                         "zoo.read_images(..., content=True)")
    started = time.perf_counter()
    out = _local(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = BlobLock(out.parent / f".{out.name}.zoo-lock", timeout=0, stale=settings().lock_stale)
    if not lock.acquire():
        owner = read_owner(lock.path)
        holder = owner.describe() if owner else "an unknown process"
        raise StageError(f"{output} is being updated by another incremental run ({holder}); wait for it, or remove "
                         f"{lock.path} if that run is gone")
    tmp = out.parent / f".{out.name}.zoo-new-{uuid.uuid4().hex[:12]}"
    try:
        _recover(out)
        steps = _Steps()
        fitted = model.fit(images) if isinstance(model, Pipeline) else model
        listing = images.withColumn("content_sha256", F.sha2(F.col("content"), 256)) if by_content else images
        made = of(fitted.transform(listing.limit(0)).schema, features_col)
        steps.done("model resolved")
        if made is None:
            raise StageError(f"the model's column {features_col!r} carries no provenance: incremental runs need a "
                             "sparkzoo featurizer to know when the features change")
        old, full, reason = None, True, "first run: every file featurized"
        marker = check_output(output)
        if marker is not None:
            previous = json.loads(marker.read_text())
            why = conflict(previous.get("provenance") or {}, made)
            if why:
                reason = f"the features would not be comparable ({why}): every file featurized again"
            elif by_content and not previous.get("by_content"):
                reason = "the previous output has no content hashes (--by-content is new): every file featurized again"
            else:
                old, full, reason = spark.read.parquet(str(out)), False, "new and changed files featurized"
        match = ["path", "content_sha256"] if by_content else list(KEYS)
        if old is None:
            found = listing.count()
            steps.done("files listed")
            todo, kept, todo_n, kept_n, old_n = listing, None, found, 0, 0
        else:
            # which files are new or changed, in one job over their keys (no file is read unless by_content)
            # against the old keys broadcast (no shuffle); then only those files are read: the path filter
            # is pushed into the binaryFile scan
            old_n = int(previous.get("rows", 0))
            had = F.broadcast(old.select(*match).withColumn("__zoo_had", F.lit(True)))
            census = (listing.select(*match).join(had, match, "left")
                      .agg(F.count(F.lit(1)).alias("found"),
                           F.collect_list(F.when(F.col("__zoo_had").isNull(), F.col("path"))).alias("fresh"))
                      .first())
            found, fresh_paths = census["found"], list(census["fresh"])
            steps.done("files listed, new and changed ones found")
            todo = listing.where(F.col("path").isin(fresh_paths)) if fresh_paths else listing.limit(0)
            cores = _cores(spark)
            kept = old.join(F.broadcast(listing.select(*match)), match, "left_semi")
            kept = kept.coalesce(cores) if cores else kept  # few large tasks: each task costs a fixed ~0.1 s
            todo_n, kept_n = len(fresh_paths), found - len(fresh_paths)
        fresh = fitted.transform(todo).drop("content")
        result = fresh if kept is None else kept.unionByName(fresh)
        result.write.parquet(str(tmp))
        steps.done("featurized and written")
        (tmp / MARKER).write_text(json.dumps({"provenance": made, "by_content": by_content, "rows": found,
                                              "written": time.time()}))
        replace_folder(tmp, out)  # two renames; a run that dies between them is put back by the next (_recover)
        steps.done("swapped in")
        return IncrementalReport(str(out), found, kept_n, todo_n, old_n - kept_n, full, reason,
                                 round(time.perf_counter() - started, 3))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.release()
