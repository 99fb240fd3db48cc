"""The examples run: the scripts and the notebooks (executed with nbclient on a small sample).

Each runs in a temporary copy of its folder with its own ZOO_HOME, against the shared photos and
the shared MobileNet v2 int8 model; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from _cluster import SPARK_HOME
from conftest import MOBILENET, REPO, missing

EXAMPLES = REPO / "examples"
SHARED = MOBILENET.parents[1]


@pytest.fixture(autouse=True)
def _shared_material():
    if not MOBILENET.exists():
        missing("the shared material is not beside the checkout")


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "ZOO_HOME": str(tmp_path / "zoo-home"), "ZOO_SHARED": str(SHARED), "ZOO_EXAMPLES_SMALL": "1",
            "PYSPARK_PYTHON": sys.executable, "ZOO_PROGRESS": "0"}


def _run_notebook(path, env: dict[str, str]):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _outputs(nb) -> str:
    return "\n".join(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_cluster_launcher_runs_the_pull_and_featurize_script(tmp_path):
    """submit.sh (spark-submit of pull_and_featurize.py), here with a local master and a model added by file."""
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-m", "zoo.cli.main", "add", str(MOBILENET), "--name", "mnv2-example"], env=env,
                   check=True, capture_output=True, timeout=120)
    env.update(MODEL="mnv2-example", GLOB="*.JPEG", ZOO_NODE_HOME=env["ZOO_HOME"], PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_SUBMIT=str(SPARK_HOME / "bin" / "spark-submit"))
    out = tmp_path / "submitted.parquet"
    result = subprocess.run([str(EXAMPLES / "cluster" / "submit.sh"), "local[2]", str(SHARED / "data" / "imagenet-sample"),
                             str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"100 images -> {out}: 1280 features each, 0 undecodable" in result.stdout


def _notebook_beside_its_script(tmp_path, stem: str):
    """Run examples/STEM.ipynb in a copy of the folder holding it and STEM.py (which it imports)."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for name in (f"{stem}.py", f"{stem}.ipynb"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder, _run_notebook(folder / f"{stem}.ipynb", _env(tmp_path))


@pytest.mark.slow
def test_pull_and_featurize_notebook(tmp_path):
    folder, nb = _notebook_beside_its_script(tmp_path, "pull_and_featurize")
    photos = len(list((SHARED / "data" / "imagenet-sample").glob("n01*.JPEG")))
    assert f"({photos}, 1280)" in _outputs(nb)
    assert (folder / "features.parquet").is_dir()


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard: ~60 s alone, 124 s in the suite (196-300 s before its JVMs ran C1-only)
def test_transfer_learning_notebook_writes_the_report(tmp_path):
    folder = tmp_path / "transfer_learning"
    folder.mkdir()
    for name in ("study.py", "study.ipynb"):
        shutil.copy(EXAMPLES / "transfer_learning" / name, folder / name)
    nb = _run_notebook(folder / "study.ipynb", _env(tmp_path))
    report = folder / "report"
    results = json.loads((report / "results.json").read_text())
    assert list(results["results"]) == ["LR120", "MN1", "MN2", "MN2+A", "MN2+A+E"]
    assert results["setup"]["positives"] == 11 and results["setup"]["images"] == 100
    for name, m in results["results"].items():
        assert 0 <= m["auc"] <= 1 and m["rows"] == 100 and m["positives"] == 11, name
        assert sum(map(sum, m["confusion"])) == 100
    text = (report / "report.md").read_text()
    assert "| MN2+A+E |" in text and "roc.png" in text
    for png in ("roc.png", "confusion.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "image/png" in json.dumps([o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])])


@pytest.mark.slow
def test_score_sklearn_model_example_agrees_with_scikit_learn(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "score_sklearn_model.py"), "--master", "local[2]"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "569 rows scored in Spark: 569 labels equal scikit-learn's" in done.stdout


@pytest.mark.slow
def test_score_sklearn_model_notebook(tmp_path):
    _, nb = _notebook_beside_its_script(tmp_path, "score_sklearn_model")
    assert "569 of 569 labels equal scikit-learn's" in _outputs(nb)


@pytest.mark.slow
def test_camera_trap_notebook_detects_crops_and_learns(tmp_path):
    """Detect, then classify, end to end on the shared photos: YOLOX-Nano's animals, their crops, MobileNet
    features and a logistic regression, saved and loaded as one pipeline."""
    folder, nb = _notebook_beside_its_script(tmp_path, "camera_trap")
    text = _outputs(nb)
    crops = int(text.split("crops: ")[1].split(" animals")[0])
    assert crops >= 3, text[-2000:]
    assert "training accuracy on the crops: " in text
    assert (folder / "camera-trap-model" / "stages").is_dir()
