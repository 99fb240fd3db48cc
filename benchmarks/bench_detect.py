"""object_detector against what a user writes without sparkzoo: Spark's ``predict_batch_udf``.

    python benchmarks/bench_detect.py --copies 3 --repeat 3      # needs ../shared (YOLOX-Nano, 100 photos)

The same model (YOLOX-Nano, fixed batch of 1) on the same photos, in one local[2] session, the arms
interleaved ``--repeat`` times, each a full job into Spark's ``noop`` sink:

- **zoo**: ``ObjectDetector(modelName="yolox-nano")`` (registered with ``zoo add --detector yolox``);
- **predict_batch_udf**: what the model's authors' demo turns into on Spark: a pandas UDF decoding and
  letterboxing each image (their ``preproc``), ``pyspark.ml.functions.predict_batch_udf`` running ONNX
  Runtime one image at a time (the graph's batch is 1), and a pandas UDF with their ``demo_postprocess``
  and ``multiclass_nms`` (tests/detection_reference.py) building the same boxes column.

Both arms must find the same number of boxes (checked), so they do the same work. Reports the medians,
photos per second and the ratio zoo / predict_batch_udf.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd  # the pandas UDFs' type hints are resolved from this module's names

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO / "tests"))
SIZE = (416, 416)


def udf_pipeline(df, model_path: str):
    """The user's pipeline: preprocess -> predict_batch_udf -> postprocess, the authors' code in pandas UDFs."""
    import numpy as np
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("pixels", T.ArrayType(T.FloatType())), T.StructField("ratio", T.DoubleType()),
                           T.StructField("height", T.IntegerType()), T.StructField("width", T.IntegerType())])

    @F.pandas_udf(schema)
    def preprocess(content: pd.Series) -> pd.DataFrame:
        import cv2
        import detection_reference as ref

        rows = []
        for data in content:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            pixels, ratio = ref._preproc(img, SIZE)
            rows.append((pixels.ravel(), ratio, img.shape[0], img.shape[1]))
        return pd.DataFrame(rows, columns=["pixels", "ratio", "height", "width"])

    def make_predict_fn():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

        def predict(batch):
            return np.concatenate([session.run(None, {"images": image[None]})[0].reshape(1, -1) for image in batch])

        return predict

    infer = predict_batch_udf(make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=16,
                              input_tensor_shapes=[[3, *SIZE]])
    box = T.StructType([T.StructField(n, t) for n, t in (("classIndex", T.IntegerType()), ("score", T.FloatType()),
                                                         ("x0", T.FloatType()), ("y0", T.FloatType()),
                                                         ("x1", T.FloatType()), ("y1", T.FloatType()))])

    @F.pandas_udf(T.ArrayType(box))
    def postprocess(raw: pd.Series, ratio: pd.Series, height: pd.Series, width: pd.Series) -> pd.Series:
        import detection_reference as ref

        out = []
        for values, r, h, w in zip(raw, ratio, height, width):
            predictions = ref._demo_postprocess(np.array(values, np.float32).reshape(1, -1, 85), SIZE)[0]
            boxes, scores = predictions[:, :4], predictions[:, 4:5] * predictions[:, 5:]
            corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1) / r
            dets = ref._multiclass_nms(corners, scores, nms_thr=0.45, score_thr=0.3)
            dets = [] if dets is None else ref.clip([(int(d[5]), float(d[4]), *map(float, d[:4])) for d in dets], h, w)
            out.append([dict(zip(box.fieldNames(), d)) for d in dets])
        return pd.Series(out)

    prepared = df.withColumn("p", preprocess("content"))
    raw = prepared.withColumn("raw", infer(F.col("p.pixels")))
    return raw.select("path", postprocess("raw", "p.ratio", "p.height", "p.width").alias("detections"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3, help="times each of the 100 photos is in the input")
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="zoo-bench-detect-")
    os.environ.update(ZOO_HOME=f"{work}/home", ZOO_PROGRESS="0", PYSPARK_PYTHON=sys.executable,
                      PYTHONPATH=os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    import zoo
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from zoo.stages.object_detector import ObjectDetector

    model = SHARED / "models" / "yolox_nano.onnx"
    zoo.add(model, name="yolox-nano", detector="yolox")
    spark = (SparkSession.builder.master(args.master).config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64").getOrCreate())
    photos = sorted((SHARED / "data" / "imagenet-sample").glob("*.JPEG"))[: args.photos]
    rows = [(f"{p.as_uri()}#{k}", p.read_bytes()) for k in range(args.copies) for p in photos]
    df = spark.createDataFrame(rows, "path string, content binary").repartition(4).cache()
    df.count()
    arms = {"zoo": lambda: ObjectDetector(modelName="yolox-nano").transform(df),
            "predict_batch_udf": lambda: udf_pipeline(df, str(model))}
    times: dict[str, list[float]] = {name: [] for name in arms}
    boxes: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, build in arms.items():
            out = build()
            started = time.perf_counter()
            out.write.format("noop").mode("overwrite").save()
            times[name].append(time.perf_counter() - started)
            boxes[name] = out.select(F.sum(F.size("detections"))).first()[0]
    spark.stop()
    if boxes["zoo"] != boxes["predict_batch_udf"]:
        raise SystemExit(f"the arms disagree: {boxes}")
    n = len(rows)
    medians = {k: statistics.median(v) for k, v in times.items()}
    report = {"photos": n, "master": args.master, "cores": os.cpu_count(), "repeat": args.repeat, "boxes": boxes["zoo"],
              "seconds": {k: round(v, 2) for k, v in medians.items()},
              "photos_per_second": {k: round(n / v, 1) for k, v in medians.items()},
              "ratio_zoo_over_udf": round(medians["predict_batch_udf"] / medians["zoo"], 2),
              "all_seconds": {k: [round(x, 2) for x in v] for k, v in times.items()}}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
