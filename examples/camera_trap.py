"""Camera traps, MMLSpark's own use case, as one Spark pipeline: find the animal, then learn what it is.

    python examples/camera_trap.py ../shared/data/imagenet-sample out/ \
        --detector-file ../shared/models/yolox_nano.onnx --features-file ../shared/models/mobilenetv2-12-int8.onnx

The conservation field runs a detector first (MegaDetector), then a species classifier on the crops.
Here: YOLOX-Nano finds animals (COCO's animal classes), ``detection_crops`` cuts each one out with a
margin, MobileNet v2 turns each crop into features, and a SparkML ``LogisticRegression`` learns a
label of the photo (here: "is it a dog?", from the shared photos' ImageNet classes). One pipeline:
it fits, saves and loads; every crop row keeps its photo's path and its box. The notebook beside
this file shows the steps one by one.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"]
DOGS = range(151, 269)  # the ImageNet-1k classes of dog breeds


def register(detector_file: Path, features_file: Path) -> tuple[str, str]:
    """The detector and the feature extractor, added to the zoo from local files (offline)."""
    import zoo

    zoo.add(detector_file, name="camera-trap-detector", detector="yolox", license="Apache-2.0")
    zoo.add(features_file, name="camera-trap-features", preprocess="imagenet", labels="imagenet", license="Apache-2.0")
    return "camera-trap-detector", "camera-trap-features"


def spark_session(master: str = "local[2]"):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local workers run this interpreter
    return (SparkSession.builder.master(master).appName("zoo-camera-trap")
            .config("spark.ui.showConsoleProgress", "false").getOrCreate())


def photos(spark, folder: Path, limit: int | None = None):
    """The photos with a label per photo: 1.0 for a dog breed, else 0.0 (labels.csv beside them)."""
    with open(folder / "labels.csv", newline="") as f:
        labelled = [(row["file"], float(int(row["class_index"]) in DOGS)) for row in csv.DictReader(f)]
    labelled = labelled[:limit] if limit else labelled
    rows = [((folder / name).as_uri(), (folder / name).read_bytes(), dog) for name, dog in labelled]
    return spark.createDataFrame(rows, "path string, content binary, dog double")


def flow(detector: str, features: str):
    """detector (animals only) -> crops (10% margin) -> MobileNet v2 features -> logistic regression."""
    from pyspark.ml.classification import LogisticRegression

    import zoo

    return zoo.pipeline(detector, detect=True, classes=ANIMALS, scoreThreshold=0.25, handleInvalid="keep",
                        then=features, then_cut=1, margin=0.1,
                        head=LogisticRegression(labelCol="dog", maxIter=50, regParam=0.01))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("images", type=Path, help="a folder of photos with labels.csv (file, class_index)")
    ap.add_argument("out", type=Path, help="where the fitted pipeline is saved")
    ap.add_argument("--detector-file", type=Path, required=True)
    ap.add_argument("--features-file", type=Path, required=True)
    args = ap.parse_args(argv)
    detector, features = register(args.detector_file, args.features_file)
    spark = spark_session()
    df = photos(spark, args.images)
    model = flow(detector, features).fit(df)
    model.write().overwrite().save(str(args.out))
    crops = model.transform(df).where("detection is not null")
    print(f"{crops.count()} animals found in {df.count()} photos; saved to {args.out}")
    crops.select("path", "detection.label", "detection.score", "prediction", "dog").show(10, truncate=60)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
