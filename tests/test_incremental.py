"""Incremental featurization on real JPEG files in a real folder: only new and changed files are
featurized, the output equals a full re-run row for row, and every bad situation leaves the
previous output untouched."""

from __future__ import annotations

import json
import os

import pytest
from pyspark.ml import PipelineModel

import zoo
from zoo.errors import StageError
from zoo.incremental import MARKER
from zoo.testing import tiny


def _write(folder, name: str, seed: int, size: int = 40) -> None:
    (folder / name).write_bytes(tiny.jpeg(size, size + 8, seed))


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(8):
        _write(folder, f"p{i}.jpg", i)
    return folder


def _model(cut: int = 1) -> PipelineModel:
    return PipelineModel(stages=[zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=cut,
                                           preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array")])


def _run(spark, photos, out, **kwargs):
    model = kwargs.pop("model", None) or _model()
    images = zoo.read_images(spark, str(photos), content=kwargs.get("by_content", False))  # hashing needs the bytes
    return zoo.featurize_incremental(spark, images, str(out), model, **kwargs)


def _rows(spark, out) -> dict:
    return {r["path"]: r["features"] for r in spark.read.parquet(str(out)).collect()}


def test_only_new_and_changed_files_are_featurized_and_the_result_equals_a_full_run(spark, zoo_env, photos, tmp_path):
    out = tmp_path / "features.parquet"
    first = _run(spark, photos, out)
    assert (first.full, first.featurized, first.kept) == (True, 8, 0) and (out / MARKER).is_file()
    _write(photos, "new.jpg", 100)
    _write(photos, "p1.jpg", 101, size=48)  # changed: other bytes and size
    (photos / "p2.jpg").unlink()
    second = _run(spark, photos, out)
    assert (second.full, second.found, second.featurized, second.kept, second.deleted) == (False, 8, 2, 6, 2)
    _run(spark, photos, tmp_path / "full.parquet")
    assert _rows(spark, out) == _rows(spark, tmp_path / "full.parquet"), "row for row what a full run gives"
    assert not list(tmp_path.glob(".features.parquet.zoo-*")), "no temporary folder or lock left"

    os.utime(photos / "p3.jpg", (1, 1))  # same bytes, another modification time
    assert _run(spark, photos, out).featurized == 1, "by size and time: featurized again"
    by_content = _run(spark, photos, out, by_content=True)
    assert by_content.full and "no content hashes" in by_content.reason
    os.utime(photos / "p4.jpg", (2, 2))
    assert _run(spark, photos, out, by_content=True).featurized == 0, "by content: the same file"
    with pytest.raises(StageError, match=r"by_content=True\) hashes each file's bytes.*content=True"):
        zoo.featurize_incremental(spark, zoo.read_images(spark, str(photos), content=False), str(out), _model(),
                                  by_content=True)

    recut = _run(spark, photos, out, model=_model(cut=2))
    assert recut.full and "cut 1 vs 2" in recut.reason and recut.featurized == 8


def test_bad_situations_leave_the_previous_output_untouched(spark, zoo_env, photos, tmp_path):
    from zoo.config import settings
    from zoo.hub.locks import BlobLock

    out = tmp_path / "features.parquet"
    _run(spark, photos, out)
    before = _rows(spark, out)

    foreign = tmp_path / "foreign.parquet"
    spark.createDataFrame([(1,)], "x int").write.parquet(str(foreign))
    with pytest.raises(StageError, match="an incremental run did not write it"):
        _run(spark, photos, foreign)
    assert spark.read.parquet(str(foreign)).count() == 1

    lock = BlobLock(tmp_path / ".features.parquet.zoo-lock", timeout=0, stale=settings().lock_stale)
    assert lock.acquire()
    try:
        with pytest.raises(StageError, match="is being updated by another incremental run .*host"):
            _run(spark, photos, out)
    finally:
        lock.release()

    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    failing = PipelineModel(stages=[zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=1,
                                              preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array",
                                              handleInvalid="error")])
    with pytest.raises(Exception, match="broken.jpg"):
        _run(spark, photos, out, model=failing)
    assert _rows(spark, out) == before, "a failed run leaves the previous output as it was"
    assert not list(tmp_path.glob(".features.parquet.zoo-*"))

    grave = tmp_path / ".features.parquet.zoo-old-interrupted"
    os.rename(out, grave)  # a run that died between its two renames
    (photos / "broken.jpg").unlink()
    assert _run(spark, photos, out).featurized == 0, "the previous output is put back, then brought up to date"
    assert _rows(spark, out) == before


def test_zoo_featurize_incremental_command(spark, mnv2, tmp_path, capsys):
    import shutil

    from conftest import PHOTOS
    from zoo.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(PHOTOS.glob("n01[56]*.JPEG")):
        shutil.copy(p, photos / p.name)
    out = tmp_path / "features.parquet"
    args = ["featurize", str(photos), "--model", mnv2, "--output", str(out), "--incremental", "--master", "local[2]"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "incremental: 0 rows kept" in first and "first run" in first
    shutil.copy(PHOTOS / "n01440764_tench.JPEG", photos / "tench.JPEG")
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    step = summary["incremental"]
    assert (step["featurized"], step["kept"], step["full"]) == (1, len(list(photos.iterdir())) - 1, False)
    # what this run computed, not the rows it kept: one image, which is too few for a rate at all
    assert summary["featurized"] == 1 and summary["images_per_second"] is None


def test_the_next_run_removes_what_a_killed_run_left(spark, zoo_env, photos, tmp_path):
    import subprocess
    import sys

    from zoo.hub.fsutil import HOST

    out = tmp_path / "features.parquet"
    _run(spark, photos, out)
    before = _rows(spark, out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: what a run killed with SIGKILL leaves in its lock
    (tmp_path / ".features.parquet.zoo-lock").write_text(json.dumps(
        {"host": HOST, "pid": dead.pid, "started": 0.0, "token": "killed"}))
    half = tmp_path / ".features.parquet.zoo-new-0123456789ab"
    half.mkdir()
    (half / "part-00000.parquet").write_bytes(b"half written")
    old = tmp_path / ".features.parquet.zoo-old-0123456789ab"  # already replaced: the output is in place
    old.mkdir()
    report = _run(spark, photos, out)
    assert report.featurized == 0 and _rows(spark, out) == before
    assert not list(tmp_path.glob(".features.parquet.zoo-*")), "what the dead run left is gone, the lock too"
