"""The partitioning benchmark runs end to end on a few photos (no timing asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PHOTOS, REPO, missing


@pytest.mark.slow
def test_bench_partitions_smoke(tmp_path):
    if not PHOTOS.exists():
        missing(f"{PHOTOS} is absent: the shared photos are not beside the checkout")
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_partitions.py"), "--models", "mobilenet", "--images", "8",
         "--rounds", "1", "--arms", "default,bytes,p1,f1"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "ZOO_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "img/s" in line]
    assert [line.split()[1] for line in lines] == ["default", "bytes", "p1", "f1"]
    assert all(float(re.search(r"([\d.]+) img/s", line).group(1)) > 0 for line in lines)
    assert lines[2].endswith("(1 partitions)")
