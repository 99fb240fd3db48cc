"""Scoring converted tabular models on a DataFrame: onnx_model against Spark's and pandas' idioms.

    python benchmarks/bench_onnx_model.py                       # 1,000,000 rows x 30 features
    python benchmarks/bench_onnx_model.py --rows 100000 --trees 50   # quicker

Two models trained on a synthetic classification set (scikit-learn's ``make_classification``,
seeded): a LightGBM classifier (``--trees``) converted with onnxmltools, and a StandardScaler +
LogisticRegression pipeline converted with skl2onnx. For each, all in one run on ``local[cores]``,
the rows as one ``array<float>`` column, written to Spark's ``noop`` sink after one warm-up:

1. sparkzoo   ``onnx_model`` fetching the label and the ZipMap probabilities;
2. peer       ``predict_batch_udf`` whose predict function calls ONNX Runtime on the same file;
3. native     a pandas UDF calling the library's own ``predict_proba`` (the model pickled to workers).

Reported: rows/s, the ratios to the peer and to native, and the peak RSS of the Python workers.
Targets (issue 18): onnx_model >= 1.5x predict_batch_udf and >= 1.0x the native pandas UDF.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd  # module level: pandas_udf resolves its type hints here

REPO = Path(__file__).resolve().parents[1]


def train(rows: int, features: int, trees: int):
    import lightgbm
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=min(rows, 50_000), n_features=features, n_informative=12, random_state=0)
    X = X.astype(np.float32)
    lgbm = lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=31, random_state=0, verbose=-1).fit(X, y)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return {"lightgbm": lgbm, "scaler+logreg": linear}


def to_onnx(name: str, model, features: int) -> bytes:
    if name == "lightgbm":
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, features]))], target_opset=15,
                               zipmap=True)
    else:
        import skl2onnx

        onx = skl2onnx.to_onnx(model, np.zeros((1, features), np.float32), target_opset={"": 17, "ai.onnx.ml": 3})
    onx.ir_version = min(onx.ir_version, 10)
    return onx.SerializeToString()


def worker_peak_rss(spark) -> int:
    def report(batches):
        import pyarrow as pa

        for _ in batches:
            pass
        with open("/proc/self/status") as fh:
            hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
        yield pa.RecordBatch.from_pydict({"peak": [hwm]})

    return max(r["peak"] for r in spark.range(0, 32, 1, 32).mapInArrow(report, "peak long").collect())


def timed(df) -> float:
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per arm, interleaved (median and spread reported)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ZOO_HOME", str(args.out / "zoo-home"))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    import zoo

    models = train(args.rows, args.features, args.trees)
    spark = (SparkSession.builder.master(f"local[{args.cores}]").appName("bench-onnx-model")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    rng = np.random.default_rng(1)
    pdf = pd.DataFrame({"id": np.arange(args.rows), "x": list(rng.normal(size=(args.rows, args.features)).astype(np.float32))})
    df = spark.createDataFrame(pdf, "id long, x array<float>").repartition(2 * args.cores).cache()
    df.count()
    report = {"rows": args.rows, "features": args.features, "trees": args.trees, "cores": args.cores,
              "runs": args.runs, "models": {}}
    for name, model in models.items():
        path = args.out / f"{name}.onnx"
        path.write_bytes(to_onnx(name, model, args.features))
        import onnx

        outputs = [o.name for o in onnx.load(str(path)).graph.output]  # label, then the ZipMap probabilities
        stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": "x"},
                          fetchDict={"label": outputs[0], "p": outputs[1]}, batchSize=4096)
        ours = stage.transform(df)

        model_file = str(path)

        def make_predict():
            import onnxruntime as ort

            sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])

            def predict(x: np.ndarray) -> np.ndarray:
                _, maps = sess.run(None, {"X": x.astype(np.float32)})
                return np.array([[m[k] for k in sorted(m)] for m in maps], np.float32)

            return predict

        peer_udf = predict_batch_udf(make_predict, return_type=T.ArrayType(T.FloatType()), batch_size=4096,
                                     input_tensor_shapes=[[args.features]])
        peer = df.select("id", peer_udf("x").alias("p"))

        @F.pandas_udf(T.ArrayType(T.DoubleType()))
        def native(x: pd.Series) -> pd.Series:
            return pd.Series(list(model.predict_proba(np.stack(x.to_numpy()))))

        arms = {"sparkzoo": ours, "peer": peer, "native": df.select("id", native("x").alias("p"))}
        for frame in arms.values():
            timed(frame)  # warm-up: workers, sessions, the model pickled to them
        runs: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(args.runs):  # interleaved: a drift of the machine's speed touches every arm alike
            for arm, frame in arms.items():
                runs[arm].append(timed(frame))
        seconds = {arm: float(np.median(times)) for arm, times in runs.items()}
        for arm, s in seconds.items():
            print(f"  {name:14} {arm:9} {args.rows / s:12,.0f} rows/s (median of {args.runs}; "
                  f"{args.rows / max(runs[arm]):,.0f}-{args.rows / min(runs[arm]):,.0f})", flush=True)
        report["models"][name] = {
            arm: {"seconds": round(s, 3), "rows_per_second": round(args.rows / s),
                  "runs_seconds": [round(t, 3) for t in runs[arm]],
                  "vs_peer": round(seconds["peer"] / s, 3), "vs_native": round(seconds["native"] / s, 3)}
            for arm, s in seconds.items()}
    report["worker_peak_rss_bytes"] = worker_peak_rss(spark)
    spark.stop()
    print(json.dumps(report, indent=1))
    print("targets: onnx_model >= 1.5x predict_batch_udf and >= 1.0x the native pandas UDF")
    (args.out / "onnx_model.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
