"""The pull benchmark runs end to end on a tiny blob, so it never rots (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


def test_bench_pull_smoke(tmp_path, zoo_env):
    out = tmp_path / "pull.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_pull.py"), "--mb", "2", "--repeat", "1",
         "--warm-calls", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert set(data["links"]) == {"1 Gbit/s", "10 Gbit/s", "loopback"}
    assert all(row["ratio"] > 0 and row["zoo_mib_s"] > 0 for row in data["links"].values())
    assert data["warm_pull_ms_median"] > 0
    assert "cold pull of 2 MiB" in result.stdout


def test_bench_large_model_smoke(tmp_path, zoo_env):
    """The over-2-GB benchmark at 20 MiB: the same path (three files, bundle, analysis, cut, numpy check)."""
    out = tmp_path / "large.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_large_model.py"), "--gib", "0.02",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["bundle_is_hard_links"] and data["max_rel_diff_vs_numpy"] < 1e-4
    assert data["cuts"] == ["y", "hr", "h", "x"] and data["cut_output_shape"] == [2, 4096] and data["cut_graph_bytes"] < 1000


def test_bench_resample_smoke(tmp_path):
    """The resampling benchmark on the shared photos: the antialiased arm is the published preprocessing."""
    from conftest import SHARED, missing

    if not (SHARED / "data" / "imagenet-sample").exists():
        missing("the shared photos are not beside the checkout")
    out = tmp_path / "resample.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_resample.py"), "--shared", str(SHARED),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["photos"] == 100 and data["antialiased"]["top1"] == data["reference_top1"]
    assert data["antialiased"]["mean_abs_pixel_diff"] < 1e-5 < data["opencv"]["mean_abs_pixel_diff"]
    assert data["antialiased"]["min_logit_cosine"] > 0.9999


def test_bench_derived_smoke(tmp_path, zoo_env):
    """The derived-file check benchmark on a small network: every figure present (no timing asserted)."""
    out = tmp_path / "derived.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_derived.py"), "--small", "--repeat", "2",
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["check_s"] > 0 and data["image_s"] > 0 and 0 < data["share_of_1000"] < 1
    assert data["table_check_s"] > 0 and data["stamp_check_s"] > 0 and "1,000 photos" in result.stdout


@pytest.mark.slow
def test_bench_detect_smoke(tmp_path):
    """bench_detect.py on 3 photos, once: both arms run and find the same boxes (no timing asserted)."""
    from conftest import SHARED, missing

    if not (SHARED / "models" / "yolox_nano.onnx").exists():
        missing("the shared YOLOX-Nano is not beside the checkout")
    out = tmp_path / "detect.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_detect.py"), "--photos", "3",
                             "--copies", "1", "--repeat", "1", "--master", "local[1]", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["photos"] == 3 and set(data["seconds"]) == {"zoo", "predict_batch_udf"} and data["boxes"] >= 0
