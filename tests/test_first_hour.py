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


def _before_spark(*args: str, code: int, env: dict | None = None) -> str:
    """Run `zoo ARGS`; it must exit with ``code`` without having started Spark. Its stderr."""
    result = zoo_cmd(*args, env_extra=env, check=code)
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


def test_predict_prints_the_top_k_classes_of_each_image(spark, mnv2, tmp_path, capsys):
    """Through the CLI's entry point in this process (the suite's Spark session is reused, as inside a
    running application); the README quick start runs `zoo predict --top 3` as a separate process."""
    from zoo.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(PHOTOS.glob("n01[45]*.JPEG"))[-2:]:
        shutil.copy(p, photos / p.name)
    assert main(["predict", str(photos), "--model", mnv2, "--top", "3"]) == 0
    printed = capsys.readouterr()
    table = [line for line in printed.out.splitlines() if line.strip()]
    assert table[0].split() == ["FILE", "RANK", "LABEL", "SCORE"]
    at = table[0].index("RANK")
    ranks = [line[at:at + 4].strip() for line in table[1:]]
    assert ranks == ["1", "2", "3", "1", "2", "3"], table
    assert "brambling" in printed.out
    assert main(["predict", str(photos), "--model", mnv2, "--top", "2", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
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


def test_re_adding_a_name_refuses_another_file_and_never_drops_what_was_given(zoo_env, tmp_path):
    from conftest import MOBILENET

    zoo_cmd("add", str(MOBILENET), "--name", "cam", "--license", "Apache-2.0", "--labels", "imagenet",
            "--description", "our camera-trap model")
    zoo_cmd("add", str(MOBILENET), "--name", "cam")  # the same file again: fields not given are kept
    kept = zoo.info("cam")
    assert (kept["license"], kept["labels"], kept["description"]) == ("Apache-2.0", "imagenet", "our camera-trap model")

    other = tmp_path / "v2.onnx"
    other.write_bytes(MOBILENET.read_bytes())
    import onnx

    model = onnx.load(str(other))
    model.doc_string = "version 2"  # another file, the same network
    onnx.save(model, str(other))
    refused = zoo_cmd("add", str(other), "--name", "cam", check=3)
    assert "already registered with another file" in refused.stderr and "--replace" in refused.stderr
    assert zoo.info("cam")["sha256"] == kept["sha256"]  # nothing changed
    zoo_cmd("add", str(other), "--name", "cam", "--replace")
    replaced = zoo.info("cam")
    assert replaced["sha256"] != kept["sha256"]
    assert (replaced["license"], replaced["labels"], replaced["description"]) == (
        "Apache-2.0", "imagenet", "our camera-trap model")


@pytest.fixture
def no_dns(monkeypatch) -> list[str]:
    """A resolver that knows no name, faked at the system edge (socket.getaddrinfo): tests reach no
    network, and a resolver's answer is exactly what these tests are about. The names asked."""
    import socket

    asked: list[str] = []

    def resolve(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


def test_offline_a_name_that_does_not_resolve_is_tried_once_per_source_and_says_zoo_offline(zoo_env, monkeypatch,
                                                                                             capsys, no_dns):
    from zoo.cli.main import main

    asked = no_dns
    monkeypatch.setenv("ZOO_HF_ENDPOINT", "https://hub.example")
    monkeypatch.setenv("ZOO_RETRIES", "3")
    assert main(["pull", "resnet50"]) == 6
    err = capsys.readouterr().err
    entry = zoo.info("resnet50")
    assert len(asked) == len(set(asked)) and {"hub.example", "github.com"} <= set(asked), asked  # never retried
    assert "ZOO_OFFLINE=1" in err and err.count("Name or service not known") == len(entry["sources"]), err
    assert main(["doctor"]) == 1
    hub = next(line for line in capsys.readouterr().out.splitlines() if " hub " in line)
    assert "cannot resolve host hub.example" in hub and "ZOO_OFFLINE=1" in hub


def test_the_cli_says_sizes_names_and_paths_as_people_read_them(mnv2, tmp_path):
    zoo.cut(mnv2, 1)
    verified = zoo_cmd("verify").stdout
    assert f"file of {mnv2} cut 1" in verified and "(no name)" not in verified, verified
    listing = zoo_cmd("ls").stdout.splitlines()
    assert max(map(len, listing)) <= 130, max(listing, key=len)
    from zoo.cli.main import _mib

    assert [_mib(1), _mib(1536), _mib(13 << 20)] == ["1 B", "1.5 KiB", "13.0 MiB"]
    helped = zoo_cmd("--help").stdout
    assert "local file, hf:// or https:// URL" in helped
    for command, option in (("add", "--name"), ("add", "--task"), ("featurize", "--device"), ("featurize", "--format")):
        text = " ".join(zoo_cmd(command, "--help").stdout.split())
        described = text.split(option, 2)[-1][:200]
        assert len(described.split()) > 3, (command, option, described)


def test_an_hf_download_asks_no_host_but_the_configured_endpoint(zoo_env, monkeypatch, no_dns):
    """huggingface_hub's header builder fetches huggingface.co/api/agent-harnesses; an air-gapped
    cluster pointed at an internal endpoint must not reach out."""
    from zoo.config import settings
    from zoo.hub import sources

    asked = no_dns
    monkeypatch.setenv("ZOO_HF_ENDPOINT", "https://hub.internal.example")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    url, headers = sources.hf_to_https("hf://org/repo/model.onnx@main", settings())
    assert url.startswith("https://hub.internal.example/org/repo/resolve/main/model.onnx")
    assert headers["authorization"] == "Bearer hf_secret_test_token" and asked == []


def test_a_spark_35_install_with_numpy_2_is_caught_by_doctor_and_before_spark(mnv2, tmp_path):
    """What `pip install 'pyspark==3.5.*' sparkzoo` gave users: pyspark 3.5 beside NumPy 2 and a
    pyarrow built for it. The package records are faked at the edge (a dist-info folder first on
    PYTHONPATH, which is what importlib.metadata reads); the numpy and pyarrow are the real ones."""
    site = tmp_path / "site"
    info = site / "pyspark-3.5.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyspark\nVersion: 3.5.9\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    import numpy

    doctor = zoo_cmd("doctor", env_extra=env, check=None)
    line = next(x for x in doctor.stdout.splitlines() if "spark libraries" in x)
    if numpy.__version__.startswith("1."):  # a Spark 3.5 environment (CI's second one): this set fits
        assert line.startswith("ok"), line
        return
    assert line.startswith("BAD") and "pyspark 3.5.9" in line and "needs numpy>=1.22,<2" in line, line
    assert "pip install 'sparkzoo[spark35]'" in line and doctor.returncode == 1
    said = _before_spark("featurize", str(PHOTOS), "--model", mnv2, "--output", str(tmp_path / "o"), code=2, env=env)
    assert "Spark cannot run sparkzoo's jobs here" in said and "sparkzoo[spark35]" in said



def test_check_model_reports_a_typo_an_impossible_cut_and_missing_inputs_before_spark(mnv2, tmp_path):
    """The same class in another command that starts Spark: `zoo check-model`."""
    assert "Did you mean 'mnv2-local'" in _before_spark("check-model", "mnv2-locl", code=4)
    assert "has no cut 99" in _before_spark("check-model", mnv2, "--cut", "99", code=9)
    assert "does not exist" in _before_spark("check-model", mnv2, "--inputs", str(tmp_path / "none"), code=13)


def test_progress_counts_images_with_a_rate_where_stderr_is_no_terminal(spark, capsys):
    """The CLI's progress reporter on a real Spark job (8 tasks of 12.5 "images", 1 s each, on the
    suite's local[2]), its interval shortened from 15 s: lines in images, rising, with a rate."""
    import re

    from zoo.cli.featurize import _Progress

    def slow(batches):
        import time as t

        t.sleep(1.0)
        yield from batches

    with _Progress(spark, True, "featurizing", 100, every=0.4):
        spark.range(0, 8, 1, 8).mapInArrow(slow, "id long").collect()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("featurizing:")]
    counts = [int(re.match(r"featurizing: ([\d,]+)/100 images \([\d.]+/s\)$", line).group(1)) for line in lines]
    assert counts and counts == sorted(counts) and 0 < counts[-1] <= 100, lines


def test_an_incremental_output_it_cannot_use_is_reported_before_spark(mnv2, tmp_path):
    """The same class again: `--incremental` into a folder another run wrote, or onto s3a://."""
    other = tmp_path / "features.parquet"
    other.mkdir()
    (other / "part-0.parquet").write_bytes(b"someone else's")
    said = _before_spark("featurize", str(PHOTOS), "--model", mnv2, "--output", str(other), "--incremental", code=10)
    assert "an incremental run did not write it" in said
    said = _before_spark("featurize", str(PHOTOS), "--model", mnv2, "--output", "s3a://bucket/f", "--incremental",
                         code=10)
    assert "cannot be swapped in atomically" in said
