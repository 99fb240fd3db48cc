"""The incremental-featurization benchmark runs end to end on a small folder (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import MOBILENET, REPO, missing


@pytest.mark.slow
def test_bench_incremental_smoke(tmp_path):
    if not MOBILENET.exists():
        missing("the shared model and photos are not beside the checkout")
    out = tmp_path / "incremental.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_incremental.py"), "--count", "60",
                             "--change", "0.05", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["equal_to_full_run"] is True and data["incremental_featurized"] == 6 and data["kept"] == 57
    assert "ratio" in result.stdout and "(target <= 0.10)" in result.stdout
