"""Score a scikit-learn model on a Spark DataFrame with sparkzoo's ``onnx_model``: copy, then adapt.

    pip install 'sparkzoo' scikit-learn skl2onnx
    python examples/score_sklearn_model.py [--master local[*]]

(or step by step in score_sklearn_model.ipynb, which imports these functions).

1. train a StandardScaler + LogisticRegression on scikit-learn's bundled breast-cancer data;
2. convert it to ONNX with skl2onnx (its ``output_probability`` is a ZipMap: a {class: probability}
   map per row, which ``onnx_model`` turns into an array in the model's class order);
3. score every row in Spark and check the labels and probabilities against scikit-learn's own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def train_and_convert(folder: Path):
    import skl2onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    onx = skl2onnx.to_onnx(model, X[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    onx.ir_version = min(onx.ir_version, 10)  # ONNX Runtime reads IR <= 10 everywhere
    path = folder / "breast_cancer.onnx"
    path.write_bytes(onx.SerializeToString())
    return model, X, path


def score(spark, path: Path, X: np.ndarray) -> list:
    """Every row of ``X`` scored in Spark by ``onnx_model``, in row order."""
    import zoo

    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(X)], "id int, features array<float>")
    scorer = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": "features"},
                       fetchDict={"label": "output_label", "probability": "output_probability"},
                       handleInvalid="keep")  # a bad row gets null outputs and the reason in `error`
    return sorted(scorer.transform(df).collect(), key=lambda r: r["id"])


def compare(model, X: np.ndarray, rows: list) -> tuple[int, float]:
    """(labels equal to scikit-learn's, largest probability difference)."""
    labels = np.array([r["label"] for r in rows])
    probabilities = np.array([r["probability"] for r in rows])
    return int((labels == model.predict(X)).sum()), float(np.abs(probabilities - model.predict_proba(X)).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--master", default="local[*]")
    args = ap.parse_args(argv)

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this interpreter
    with tempfile.TemporaryDirectory() as tmp:
        model, X, path = train_and_convert(Path(tmp))
        spark = SparkSession.builder.master(args.master).appName("score-sklearn").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        rows = score(spark, path, X)
        spark.stop()
    same_labels, worst = compare(model, X, rows)
    print(f"{len(rows)} rows scored in Spark: {same_labels} labels equal scikit-learn's, "
          f"largest probability difference {worst:.1e}")
    return 0 if same_labels == len(rows) and worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
