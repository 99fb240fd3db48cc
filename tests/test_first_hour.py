"""A new user's first hour through the real `zoo` command: mistakes are reported before Spark starts,
nothing found is an error that says what was there, globs ignore letter case, Ctrl-C leaves nothing
half-written, `zoo predict --top K` prints K classes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zoo
from conftest import PHOTOS, zoo_cmd

STARTING = "starting Spark"


def _before_spark(*args: str, code: int) -> str:
    """Run `zoo ARGS`; it must exit with ``code`` without having started Spark. Its stderr."""
    result = zoo_cmd(*args, check=code)
    assert STARTING not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_a_missing_input_folder_is_reported_before_spark_starts(mnv2, tmp_path):
    said = _before_spark("featurize", str(tmp_path / "no" / "such"), "--model", mnv2, "--output",
                         str(tmp_path / "o"), code=13)
    assert f"input '{tmp_path / 'no' / 'such'}' does not exist" in said


def test_nothing_matching_is_an_error_that_says_what_was_searched_and_what_is_there(mnv2, tmp_path):
    said = _before_spark("featurize", str(PHOTOS), "--glob", "*.png", "--model", mnv2, "--output",
                         str(tmp_path / "o"), code=13)
    assert "'*.png' (any letter case)" in said and "100 .JPEG" in said, said
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden.jpg").write_bytes(b"x")
    said = _before_spark("predict", str(empty), "--model", mnv2, code=13)
    assert "no files in" in said and "names starting with '.' or '_' are skipped" in said
    assert not (tmp_path / "o").exists()


def test_a_model_typo_an_impossible_cut_and_a_bad_option_are_reported_before_spark(mnv2, tmp_path):
    out = str(tmp_path / "o")
    assert "Did you mean 'mnv2-local'" in _before_spark("featurize", str(PHOTOS), "--model", "mnv2-locl",
                                                          "--output", out, code=4)
    assert "has no cut 99; available cuts: 0=" in _before_spark("featurize", str(PHOTOS), "--model", mnv2,
                                                               "--cut", "99", "--output", out, code=9)
    assert "argument --top: 0 is below 1" in _before_spark("predict", str(PHOTOS), "--model", mnv2, "--top", "0",
                                                           code=2)
    assert "argument --batch-size: 'many' is not a whole number" in _before_spark(
        "featurize", str(PHOTOS), "--model", mnv2, "--batch-size", "many", "--output", out, code=2)


def test_globs_match_any_letter_case_in_python_and_in_spark(spark, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    for name in ("IMG_1.JPG", "img_2.jpg", "scan.Jpeg", "notes.txt"):
        shutil.copy(next(PHOTOS.glob("*.JPEG")), folder / name)
    listed = {Path(p).name for p in zoo.list_images(str(folder), glob="*.jpg")}
    assert listed == {"IMG_1.JPG", "img_2.jpg"}
    assert {Path(p).name for p in zoo.list_images(str(folder), glob="*.{jpg,jpeg}")} == {"IMG_1.JPG", "img_2.jpg",
                                                                                        "scan.Jpeg"}
    assert zoo.list_images(str(folder), glob="*.jpg", case_sensitive=True) == [f"file:{folder / 'img_2.jpg'}"]
    read = {Path(r.path).name for r in zoo.read_images(spark, str(folder), glob="*.jpg").collect()}
    assert read == listed  # Spark's listing (Hadoop's glob) agrees with Python's
    assert zoo.read_images(spark, str(folder), glob="*.jpg", case_sensitive=True).count() == 1


@pytest.mark.slow
def test_predict_prints_the_top_k_classes_of_each_image(mnv2, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(PHOTOS.glob("n01[45]*.JPEG"))[-2:]:
        shutil.copy(p, photos / p.name)
    result = zoo_cmd("predict", str(photos), "--model", mnv2, "--top", "3", "--master", "local[1]")
    table = [line for line in result.stdout.splitlines() if line.strip()]
    assert table[0].split() == ["FILE", "RANK", "LABEL", "SCORE"]
    at = table[0].index("RANK")
    ranks = [line[at:at + 4].strip() for line in table[1:]]
    assert ranks == ["1", "2", "3", "1", "2", "3"], table
    assert "brambling" in result.stdout and STARTING in result.stderr
    as_json = json.loads(zoo_cmd("predict", str(photos), "--model", mnv2, "--top", "2", "--json",
                                 "--master", "local[1]").stdout)
    assert [len(p["top"]) for p in as_json["predictions"]] == [2, 2]


@pytest.mark.slow
def test_ctrl_c_cancels_cleanly_and_keeps_the_previous_output(mnv2, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    photos = sorted(PHOTOS.glob("*.JPEG"))
    for i in range(3000):  # links: long enough a job to interrupt in the middle
        os.symlink(photos[i % len(photos)], many / f"{i:04d}.jpg")
    out = tmp_path / "features.parquet"
    out.mkdir()
    (out / "previous-run.parquet").write_bytes(b"the previous output")
    cmd = [sys.executable, "-m", "zoo.cli.main", "featurize", str(many), "--model", mnv2, "--output", str(out),
           "--overwrite", "--master", "local[1]", "--batch-size", "1"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".features.parquet.zoo-new-*")):  # the writing job has started
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.2)
    time.sleep(1)
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-3000:]
    assert "zoo: interrupted" in stderr and "Traceback" not in stderr and "ERROR" not in stderr, stderr[-3000:]
    assert (out / "previous-run.parquet").read_bytes() == b"the previous output"  # kept as it was
    assert list(tmp_path.glob(".features.parquet.zoo-*")) == []  # nothing half-written beside it
