"""The featurization benchmark runs end to end on a few dozen images, so it never rots.

No timing is asserted (figures depend on the machine); what is asserted is that every method ran,
produced the same features as the raw loop, and that sparkzoo loaded the model at most once per
worker.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_bench_featurize_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_featurize.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "featurize.json").read_text())
    assert [c["kind"] for c in report["cases"]] == ["large", "photos"]  # generated 800x600 JPEGs, everyday photos
    assert len(list((tmp_path / "images-24").glob("*.jpg"))) == 24 and len(list((tmp_path / "photos-24").glob("*"))) == 24
    for case in report["cases"]:
        assert case["images"] == 24
        assert set(case["methods"]) == {"ceiling", "raw", "bound", "peer", "naive", "sparkzoo", "bytes", "wide", "fast"}
        for method, figures in case["methods"].items():
            assert figures["images_per_second"] > 0, method
            if method not in ("ceiling", "raw", "bound"):  # wide: one task at a time, on all the cores
                assert figures["task_cpus"] == (report["cores"] if method == "wide" else 1), (method, figures)
            if method == "fast":  # reduced JPEG decoding: close, not equal (photos too small to reduce: equal)
                assert 0.9 < figures["min_cosine_vs_raw_loop"] <= 1.0, figures
                continue
            # the same files give the same features whichever way they are computed
            assert figures["max_abs_diff_vs_raw_loop"] < 1e-4, (method, figures)
        assert case["workers"] and all(w["loads"] <= 1 for w in case["workers"]), case["workers"]
    assert report["cases"][0]["methods"]["fast"]["min_cosine_vs_raw_loop"] < 1.0, "fastDecode reduces 800x600 JPEGs"
    assert "targets: sparkzoo (defaults) >= 0.92x ceiling" in result.stdout


@pytest.mark.slow
def test_bench_gpu_dry_run_smoke(tmp_path):
    """The GPU benchmark's code path on CPU (``--dry-run``): CI has no GPU, but the script must not rot."""
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--dry-run", "--images", "8", "--workers", "2",
         "--batch", "4", "--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["images"] == 8
    assert set(report["img_per_s"]) == {"tensors cpu", "tensors cuda", "executor cpu", "executor cuda",
                                        "executor cuda x2 workers"}
    assert all(v > 0 for v in report["img_per_s"].values())
    assert report["agreement"]["min_cosine"] > 0.99999 and report["agreement"]["feature_scale"] > 0
