"""The vector-assembler benchmark runs end to end on a tiny input (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_bench_vector_assembler_smoke(tmp_path):
    out = tmp_path / "va.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_vector_assembler.py"), "--rows", "200", "--width", "64",
         "--repeat", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["rows"] == 200 and data["ratio"] > 0 and data["ratio_without_jar"] > 0
    assert data["jvm_functions"] is True  # the jar loaded into the benchmark's session
    assert "ratio (target >= 2.0)" in result.stdout
