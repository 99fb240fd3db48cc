"""Deep featurization through Spark on real data: the shared MobileNet v2 int8 and 100 ImageNet photos."""

from __future__ import annotations

import io
import json
import os

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

import zoo
from zoo.pipelines import default_partitions
from zoo.runtime import imaging, sessions
from zoo.testing import tiny
from zoo.hub.presets import IMAGENET
from zoo.errors import DeviceError, SchemaError, StageError
from zoo.stages.workers.image_input import FILES_MARK

from conftest import SHARED

PHOTOS = SHARED / "data" / "imagenet-sample"


def _top1(rows, labels, column="features") -> float:
    hits = [int(np.argmax(r[column])) == labels[os.path.basename(r["path"])] for r in rows]
    assert len(hits) == len(labels)
    return float(np.mean(hits))


def test_preprocessing_makes_torchvisions_pixels_on_the_shared_photos(labels):
    """The published preprocessing (torchvision on Pillow: antialiased bilinear) pixel for pixel;
    OpenCV's INTER_LINEAR, which does not antialias, is measurably off on the same photos."""
    from conftest import reference_preprocess

    pre = imaging.Preprocessor(IMAGENET, {"shape": [1, 3, 224, 224]})
    ours, opencv = np.empty(pre.row_shape, np.float32), np.empty(pre.row_shape, np.float32)
    aliased = imaging.Preprocessor(IMAGENET, {"shape": [1, 3, 224, 224]})
    aliased.antialias_filter = None  # what sparkzoo did before 0.3: cv2.resize(INTER_LINEAR)
    worst, opencv_diff = 0.0, []
    for name in sorted(labels)[:30]:
        img = imaging.decode((PHOTOS / name).read_bytes())
        reference = reference_preprocess(PHOTOS / name)
        pre(img, ours)
        aliased(img, opencv)
        worst = max(worst, float(np.abs(ours - reference).max()))
        opencv_diff.append(float(np.abs(opencv - reference).mean()))
    assert worst < 1e-5, worst
    assert np.mean(opencv_diff) > 0.01, opencv_diff  # ~2 levels of 255 per pixel on average


@pytest.mark.slow
def test_pipeline_cut0_top1_on_real_photos_and_bgr_is_measurably_worse(spark, mnv2, labels, reference_top1):
    df = zoo.read_images(spark, str(PHOTOS), glob="*.JPEG")
    rgb = zoo.pipeline(mnv2, cut=0).fit(df).transform(df).select("path", "features").collect()
    top1 = _top1(rgb, labels)
    assert top1 >= reference_top1 - 0.03, (top1, reference_top1)
    bgr_pre = json.dumps({**IMAGENET, "color_order": "BGR"})
    bgr = zoo.pipeline(mnv2, cut=0, preprocess=bgr_pre).fit(df).transform(df).select("path", "features").collect()
    assert _top1(bgr, labels) <= top1 - 0.10, (top1, _top1(bgr, labels))


def test_zoo_featurize_command_top1(spark, mnv2, labels, reference_top1, tmp_path, capsys):
    from zoo.cli.main import main

    out = tmp_path / "features.parquet"
    code = main(["featurize", str(PHOTOS), "--glob", "*.JPEG", "--model", mnv2, "--cut", "0", "--output", str(out),
                 "--master", "local[2]", "--format", "array", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 100 and summary["failed"] == 0
    # a rate only where the work took long enough to mean one (issue 36: small jobs are fixed cost)
    assert summary["images_per_second"] > 0 if summary["seconds"] >= 2 else summary["images_per_second"] is None
    assert 0 < summary["startup_seconds"] < 120, "Spark start-up is reported apart from featurization"
    rows = spark.read.parquet(str(out)).collect()
    assert set(rows[0].asDict()) == {"path", "modificationTime", "length", "features", "error"}
    from conftest import MOBILENET_SHA

    made = zoo.provenance(spark.read.parquet(str(out)), "features")  # from the parquet footer
    assert (made["model_sha256"], made["cut"], made["width"]) == (MOBILENET_SHA, 0, 1000)
    assert _top1(rows, labels) >= reference_top1 - 0.03
    assert main(["featurize", str(PHOTOS), "--model", mnv2, "--output", str(out)]) == 10  # exists, no --overwrite


def test_pipeline_features_equal_a_direct_onnx_runtime_computation(spark, mnv2, labels):
    df = zoo.read_images(spark, str(PHOTOS), glob="*.JPEG").repartition(5)
    got = {r["path"]: np.array(r["features"]) for r in
           zoo.pipeline(mnv2, cut=1, outputFormat="array", batchSize=7).fit(df).transform(df).collect()}
    session = ort.InferenceSession(str(zoo.cut(mnv2, 1)), providers=["CPUExecutionProvider"])
    pre = imaging.Preprocessor(IMAGENET, {"layout": "NCHW", "shape": [None, 3, 224, 224], "dtype": "float32"})
    assert len(got) == 100
    for path, features in got.items():
        buf = np.empty((1, 3, 224, 224), np.float32)
        pre(cv2.imread(path.removeprefix("file:")), buf[0])
        want = session.run(None, {"input": buf})[0][0]
        assert features.shape == (1280,)
        np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5, err_msg=path)


def _bad_images(tmp_path) -> dict[str, bytes]:
    from PIL import Image  # only to write the CMYK JPEG, which OpenCV cannot encode

    good = tiny.jpeg(60, 80, 1)
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 48), (10, 200, 30, 5)).save(cmyk, "JPEG")
    big = np.zeros((10000, 10000), np.uint8)
    return {
        "truncated.jpg": good[: len(good) // 2],
        "text.jpg": b"this is not an image\n",
        "empty.jpg": b"",
        "one_pixel.png": cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes(),
        "gray.png": cv2.imencode(".png", np.full((50, 70), 90, np.uint8))[1].tobytes(),
        "sixteen_bit.png": cv2.imencode(".png", np.full((40, 40, 3), 40000, np.uint16))[1].tobytes(),
        "cmyk.jpg": cmyk.getvalue(),
        "rgba.png": cv2.imencode(".png", np.full((40, 50, 4), 128, np.uint8))[1].tobytes(),
        "huge.png": cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes(),
        "good.jpg": good,
    }


INVALID = {"truncated.jpg": "truncated", "text.jpg": "not an image", "empty.jpg": "empty",
           "huge.png": "100,000,000 pixels, above maxPixels"}


@pytest.mark.parametrize("threads", [1, 2], ids=["in-line", "decoded-ahead"])  # 2: sessions.decodes_ahead
@pytest.mark.parametrize("mode", ["keep", "skip", "error"])
def test_bad_images_get_the_documented_outcome_in_every_mode(spark, tmp_path, mode, threads):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, data in _bad_images(tmp_path).items():
        (folder / name).write_bytes(data)
    # built by hand rather than with read_images: Spark's binaryFile source never lists 0-byte files
    df = spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in folder.iterdir()], "path string, content binary")
    stage = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=1, handleInvalid=mode,
                      preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array", batchSize=3, numThreads=threads)
    if mode == "error":
        with pytest.raises(Exception, match=r"file /.*(truncated|text|empty|huge)\.(jpg|png).*handleInvalid='skip'"):
            stage.transform(df).collect()
        return
    rows = {os.path.basename(r["path"]): r for r in stage.transform(df).collect()}
    decodable = set(_bad_images(tmp_path)) - set(INVALID)
    if mode == "skip":
        assert set(rows) == decodable  # exactly the undecodable ones dropped
    else:
        assert set(rows) == decodable | set(INVALID)  # nothing lost
        for name, reason in INVALID.items():
            assert rows[name]["features"] is None and reason in rows[name]["error"] and name in rows[name]["error"]
    for name in decodable:
        assert len(rows[name]["features"]) == 5 and np.all(np.isfinite(rows[name]["features"])), name
        if mode == "keep":
            assert rows[name]["error"] is None


def test_decoding_ahead_gives_the_same_features_as_decoding_in_line(spark, mnv2):
    """Two ONNX Runtime threads per task: the next batch is decoded on a second thread meanwhile
    (sessions.decodes_ahead); the features are the same, row for row (to ORT's rounding across thread counts)."""
    assert sessions.decodes_ahead(sessions.RuntimeOptions(device="cpu", intra_op_threads=2))
    df = zoo.read_images(spark, str(PHOTOS), glob="*.JPEG")
    runs = {}
    for threads in (1, 2):
        model = zoo.pipeline(mnv2, cut=1, outputFormat="array", batchSize=3, numThreads=threads).fit(df)
        runs[threads] = {r["path"]: r["features"] for r in model.transform(df).collect()}
    assert len(runs[1]) == 100 and set(runs[1]) == set(runs[2])
    for path, features in runs[1].items():
        np.testing.assert_allclose(runs[2][path], features, rtol=1e-5, atol=1e-5, err_msg=path)


def test_image_struct_and_path_inputs_give_the_same_features_as_bytes(spark, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (_, data) in enumerate(tiny.image_rows()):
        (folder / f"{i}.png").write_bytes(cv2.imencode(".png", cv2.imdecode(np.frombuffer(data, np.uint8), 1))[1].tobytes())
    params = dict(modelName=tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array")
    by_bytes = zoo.stage("image_featurizer", **params).transform(zoo.read_images(spark, str(folder)))
    from_bytes = {os.path.basename(r["path"]): r["features"] for r in by_bytes.collect()}
    images = spark.read.format("image").load(str(folder))
    from_struct = {os.path.basename(r["image"]["origin"]): r["features"] for r in
                   zoo.stage("image_featurizer", inputCol="image", **params).transform(images).collect()}
    paths = spark.createDataFrame([(str(p),) for p in folder.iterdir()], "file string")
    from_path = {os.path.basename(r["file"]): r["features"] for r in
                 zoo.stage("image_featurizer", inputCol="file", **params).transform(paths).collect()}
    assert len(from_bytes) == 5 and from_bytes == from_struct == from_path


def test_load_count_is_at_most_one_per_python_worker(spark):
    rows = [(f"img{i}", data) for i, (_, data) in enumerate(tiny.image_rows() * 400)]
    df = spark.createDataFrame(rows, "path string, content binary").repartition(20)
    stage = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), cut=2, preprocess=json.dumps(tiny.PREPROCESS))
    assert stage.transform(df).where(F.col("features").isNotNull()).count() == 2000
    spec = stage._model_spec(spark)

    def report(batches):  # runs in the same pool of Arrow Python workers as the featurizer
        import pyarrow as pa

        import zoo as z

        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "loads": [z.model_loads(spec.sha256)]})

    reports = spark.range(0, 200, 1, 200).mapInArrow(report, "pid long, loads long").collect()
    per_worker = {r["pid"]: r["loads"] for r in reports}
    assert per_worker and max(per_worker.values()) == 1, per_worker  # loaded, and never twice in one worker
    assert sum(per_worker.values()) <= 2  # local[2]: at most one load per concurrently running worker


@pytest.mark.slow
def test_pipeline_with_head_augmentation_and_ensembling_saves_and_loads(spark, tmp_path):
    rows = [(i, f"photo{i % 6}", float(i % 2), data) for i, (_, data) in enumerate(tiny.image_rows() * 4)]
    df = spark.createDataFrame(rows, "id int, photo string, label double, content binary")
    pipe = zoo.pipeline(tiny.tiny_model_path(), cut=1, augment=True, ensemble_by="photo",
                        head=LogisticRegression(maxIter=5), preprocess=json.dumps(tiny.PREPROCESS))
    assert [s.zoo_name if hasattr(s, "zoo_name") else type(s).__name__ for s in pipe.getStages()] == [
        "image_augmenter", "image_featurizer", "LogisticRegression", "group_average"]
    model = pipe.fit(df)
    out = model.transform(df)
    assert out.count() == 2 * df.count()  # every photo plus its left-right flip
    assert sorted(r["variant"] for r in out.select("variant").distinct().collect()) == ["flip_lr", "original"]
    by_photo = out.groupBy("photo").agg(F.countDistinct(vector_to_array("probability_avg").cast("string")).alias("n"))
    assert {r["n"] for r in by_photo.collect()} == {1}  # one ensembled prediction per photo
    model.write().overwrite().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    assert loaded.stages[1].getModelSha256() == zoo.hub.pin(tiny.tiny_model_path())
    key = ["id", "variant"]
    a = {tuple(r[k] for k in key): r["probability_avg"] for r in out.collect()}
    b = {tuple(r[k] for k in key): r["probability_avg"] for r in loaded.transform(df).collect()}
    assert a == b


def test_flipped_rows_really_are_flipped(spark):
    data = tiny.jpeg(30, 40, 3)
    df = spark.createDataFrame([("a", data)], "path string, content binary")
    out = zoo.stage("image_augmenter", variants=["flip_lr", "flip_ud"]).transform(df).collect()
    img = {r["variant"]: cv2.imdecode(np.frombuffer(r["content"], np.uint8), cv2.IMREAD_COLOR) for r in out}
    assert [r["variant"] for r in out] == ["original", "flip_lr", "flip_ud"]
    np.testing.assert_array_equal(img["flip_lr"], img["original"][:, ::-1])
    np.testing.assert_array_equal(img["flip_ud"], img["original"][::-1])


def test_augmenting_files_read_by_the_executors_reads_each_once_and_loses_none(spark, tmp_path):
    """read_images' default frame has no bytes: the augmenter reads each file into ``content`` (originals
    as they are, flips beside them), and a file gone since the listing keeps its row for the featurizer."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(3):
        (folder / f"{k}.jpg").write_bytes(tiny.jpeg(30, 40, seed=k))
    df = zoo.read_images(spark, str(folder))
    assert "content" not in df.columns
    (folder / "2.jpg").unlink()  # listed, then gone
    out = zoo.stage("image_augmenter").transform(df)
    assert out.columns == ["path", "modificationTime", "length", "content", "variant"]
    rows = out.collect()
    by = {(os.path.basename(r["path"]), r["variant"]): r["content"] for r in rows}
    assert sorted(by) == [("0.jpg", "flip_lr"), ("0.jpg", "original"), ("1.jpg", "flip_lr"), ("1.jpg", "original"),
                          ("2.jpg", "original")]
    assert by[("0.jpg", "original")] == (folder / "0.jpg").read_bytes() and by[("2.jpg", "original")] is None
    flipped = cv2.imdecode(np.frombuffer(by[("1.jpg", "flip_lr")], np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(flipped, cv2.imdecode(np.frombuffer(by[("1.jpg", "original")], np.uint8),
                                                        cv2.IMREAD_COLOR)[:, ::-1])
    feats = zoo.pipeline(tiny.tiny_model_path(), augment=True, preprocess=json.dumps(tiny.PREPROCESS),
                         handleInvalid="keep").fit(df).transform(df)
    errors = {(os.path.basename(r["path"]), r["variant"]): r["error"] for r in feats.collect()}
    assert len(errors) == 5 and [k for k, e in errors.items() if e] == [("2.jpg", "original")]
    assert f"file {folder / '2.jpg'}" in errors[("2.jpg", "original")]


def test_a_pinned_pipeline_refuses_a_model_that_changed(spark, zoo_env, write_registry, tmp_path):

    path = tmp_path / "m.onnx"
    path.write_bytes(tiny.tiny_model_bytes())
    stage = zoo.stage("image_featurizer", modelName=str(path), cut=1, modelSha256="0" * 64)
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
    with pytest.raises(StageError, match="pinned to 0000"):
        stage.transform(df)


def test_device_selection_without_a_gpu():
    if sessions.cuda_available():
        pytest.skip("this machine has a working CUDA GPU")
    assert sessions.providers("auto") == ("cpu", ["CPUExecutionProvider"])
    with pytest.raises(DeviceError, match="device='cuda' was requested"):
        sessions.providers("cuda")
    with pytest.raises(DeviceError, match="device must be one of"):
        sessions.providers("tpu")


def test_a_model_without_a_recipe_is_refused_until_one_is_given(spark, tmp_path):
    """No guessed pixels: the shared MobileNet v2 on raw 0-255 pixels named the class of 0 of 100 photos."""
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny.tiny_model_bytes())
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
    for kind in ("image_featurizer", "image_classifier"):
        extra = {"labels": tiny.tiny_labels_path()} if kind == "image_classifier" else {"cut": 1}
        with pytest.raises(StageError, match=rf"^stage {kind} \(.*model '.*m\.onnx' has no preprocessing recipe .* set "
                                             r"preprocess to a preset \(imagenet, efficientnet-lite\), a JSON recipe, or "
                                             r"'none'"):
            zoo.stage(kind, modelName=str(path), **extra).transform(df)
    plain = zoo.stage("image_featurizer", modelName=str(path), cut=1, preprocess="none", outputFormat="array")
    assert all(r["features"] is not None for r in plain.transform(df).collect()), "'none' is a choice, and runs"


def test_cuda_featurizer_task_without_an_assigned_gpu_fails_before_loading_the_model(spark, tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_CUDA_DEVICE", raising=False)
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny.tiny_model_bytes())
    stage = zoo.stage("image_featurizer", modelName=str(path), cut=1, device="cuda", preprocess=json.dumps(tiny.PREPROCESS))
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
    with pytest.raises(Exception, match="Spark assigned no GPU to this task") as info:
        stage.transform(df).collect()
    assert "spark.task.resource.gpu.amount" in str(info.value)


def test_embedded_model_makes_a_saved_pipeline_self_contained(spark, tmp_path, monkeypatch, zoo_env):
    source = tmp_path / "model.onnx"
    source.write_bytes(tiny.tiny_model_bytes())
    df = spark.createDataFrame(tiny.image_rows(), "path string, content binary")
    model = zoo.pipeline(str(source), cut=2, embed=True, outputFormat="array",
                         preprocess=json.dumps(tiny.PREPROCESS)).fit(df)
    want = {r["path"]: r["features"] for r in model.transform(df).collect()}
    model.write().overwrite().save(str(tmp_path / "pm"))
    source.unlink()  # the model's only source is gone, and so is the cache
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "fresh-home"))
    loaded = PipelineModel.load(str(tmp_path / "pm"))
    featurizer = loaded.stages[0]
    assert featurizer.getModelName().startswith("sha256:") and featurizer.getShipModel() == "always"
    assert {r["path"]: r["features"] for r in loaded.transform(df).collect()} == want


def test_fast_decode_keeps_top1_on_large_photos_and_is_off_by_default(spark, mnv2, labels, reference_top1, tmp_path):
    """fastDecode decodes large JPEGs at reduced scale: pixels differ, accuracy must not."""
    big = tmp_path / "big"
    big.mkdir()
    for name in labels:  # the photos at 3x (shorter side >= 1024: libjpeg decodes them at 1/4)
        img = cv2.imread(str(PHOTOS / name))
        cv2.imwrite(str(big / name), cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    df = zoo.read_images(spark, str(big), glob="*.JPEG")
    full_stage = zoo.pipeline(mnv2, cut=0)
    assert full_stage.getStages()[0].getFastDecode() is False
    full = full_stage.fit(df).transform(df).select("path", "features").collect()
    fast = zoo.pipeline(mnv2, cut=0, fastDecode=True).fit(df).transform(df).select("path", "features").collect()
    top_full, top_fast = _top1(full, labels), _top1(fast, labels)
    assert top_fast >= reference_top1 - 0.05 and abs(top_fast - top_full) <= 0.05, (top_full, top_fast, reference_top1)
    differ = sum(not np.array_equal(np.asarray(a["features"]), np.asarray(b["features"]))
                 for a, b in zip(sorted(full, key=lambda r: r["path"]), sorted(fast, key=lambda r: r["path"])))
    assert differ > 50, "fastDecode must really decode differently"


@pytest.mark.parametrize("size", [(500, 375), (600, 800), (1600, 1200), (3000, 520), (224, 224), (2100, 4100)])
def test_reduced_decoding_never_shrinks_below_the_resize_target(size):
    w, h = size
    pre = imaging.Preprocessor(IMAGENET, {"name": "x", "shape": [None, 3, 224, 224], "layout": "NCHW"})
    data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))[1].tobytes()
    img = imaging.decode(data, reduction=pre.reduction)
    factor = pre.reduction(w, h)
    assert img.shape[:2] == (-(-h // factor), -(-w // factor))
    assert min(img.shape[:2]) >= 256 or factor == 1  # the shorter side still reaches the resize target (256)
    if min(w, h) >= 512:
        assert factor >= 2
    row = np.empty(pre.row_shape, np.float32)
    pre(img, row)  # and the preprocessing still yields the model's 224x224 crop


def test_read_images_coalesces_small_files_into_fewer_tasks_and_loses_none(spark, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(300):
        (folder / f"{k:03d}.jpg").write_bytes(tiny.jpeg(8 + k % 5, 9, seed=k))
    spark_own = zoo.read_images(spark, str(folder), partitions=0)
    default = zoo.read_images(spark, str(folder))
    explicit = zoo.read_images(spark, str(folder), partitions=3)
    assert spark_own.rdd.getNumPartitions() >= 8  # binaryFile: ~31 small files per partition
    cores = spark.sparkContext.defaultParallelism
    assert default.rdd.getNumPartitions() == default_partitions(300, cores) == max(2 * cores, 4)
    assert explicit.rdd.getNumPartitions() == 3
    for df in (spark_own, default, explicit):
        paths = [r["path"] for r in df.select("path").collect()]
        assert len(paths) == 300 and len(set(paths)) == 300
    feats = zoo.pipeline(tiny.tiny_model_path(), cut=1, preprocess=json.dumps(tiny.PREPROCESS)).fit(default).transform(default)
    assert feats.where("features IS NOT NULL").count() == 300


def test_read_images_without_content_lets_executors_read_the_files_with_the_same_features(spark, tmp_path):
    """The default for local files (``content=None``): no bytes through the JVM, even tasks, the stages'
    default ``inputCol="content"`` reads the marked ``path``, and each row's features are those of its
    own file, names Hadoop spells raw (``a%20b.jpg`` is not ``a b.jpg``; ``#`` is no fragment) included."""
    folder = tmp_path / "odd names"
    (folder / "sub dir").mkdir(parents=True)
    names = ["a b.jpg", "a%20b.jpg", "x#1?.jpg", "sub dir/é.jpg"] + [f"{k:03d}.jpg" for k in range(56)]
    for k, name in enumerate(names):  # every file different, so a mix-up changes features
        (folder / name).write_bytes(tiny.jpeg(12 + k % 7, 10 + k % 5, seed=k))
    params = dict(cut=1, preprocess=json.dumps(tiny.PREPROCESS), outputFormat="array", handleInvalid="keep")
    bytes_in = zoo.read_images(spark, str(folder), content=True)
    files_in = zoo.read_images(spark, str(folder))
    assert files_in.columns == ["path", "modificationTime", "length"]  # local: no bytes column
    assert zoo.read_images(spark, str(folder), content=False).columns == files_in.columns
    assert files_in.schema["path"].metadata.get(FILES_MARK) is True
    assert not bytes_in.schema["path"].metadata.get(FILES_MARK), "with the bytes in the frame, the stages read them"
    lineage = files_in._jdf.queryExecution().toRdd().toDebugString()
    assert "PythonRDD[" not in lineage, lineage  # the JVM unpickles the listing: no Python worker per task for it
    sizes = files_in.rdd.glom().map(len).collect()
    assert len(sizes) == default_partitions(60, spark.sparkContext.defaultParallelism) and sum(sizes) == 60
    assert max(sizes) - min(sizes) <= 1, sizes  # even: one file apart at most, not ~31
    expected = {r["path"]: r["features"] for r in
                zoo.pipeline(tiny.tiny_model_path(), **params).fit(bytes_in).transform(bytes_in).collect()}
    files_model = zoo.pipeline(tiny.tiny_model_path(), **params).fit(files_in)  # default inputCol="content"
    got = {r["path"]: r for r in files_model.transform(files_in.where("length > 0")).collect()}
    assert set(got) == set(expected) and len(got) == 60
    assert all(r["error"] is None and r["features"] == expected[p] for p, r in got.items())
    assert len({tuple(f) for f in expected.values()}) == 60
    # only read_images' mark makes a path column stand in for the bytes: a frame that merely lacks them is refused
    unmarked = spark.createDataFrame([(p,) for p in list(got)[:2]], "path string")
    with pytest.raises(SchemaError, match=r"input column 'content' is missing.*Available columns: path"):
        files_model.transform(unmarked)
    # a URL spelling (percent-encoded, as pathlib writes it) names the same files
    urls = spark.createDataFrame([((folder / n).as_uri(),) for n in names[:4]], "path string")
    by_url = zoo.stage("image_featurizer", modelName=tiny.tiny_model_path(), inputCol="path", **params).transform(urls)
    assert [r["features"] for r in by_url.collect()] == [expected[f"file:{folder / n}"] for n in names[:4]]


def test_read_images_without_content_refuses_files_executors_cannot_open_as_paths():
    from zoo.pipelines import _check_local

    _check_local(["file:/data/a.jpg", "file:/data/b.jpg"], "/data")
    with pytest.raises(StageError, match=r"hdfs://nn/data/b.jpg is not on a local file system.*content=True"):
        _check_local(["file:/data/a.jpg", "hdfs://nn/data/b.jpg"], "hdfs://nn/data")


def test_a_worker_freezes_its_long_lived_objects_after_loading_a_model():
    """PySpark's daemon runs gc.collect() after every task of a reused worker: frozen objects make it cheap."""
    import gc

    gc.unfreeze()
    try:
        from pathlib import Path

        key = os.urandom(32).hex()  # a model this process has not loaded: a real load, not a cache hit
        sessions.session(key, lambda: Path(tiny.tiny_model_path()), sessions.RuntimeOptions(device="cpu"))
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("files, cores, partitions", [
    (10, 2, 4),  # at least two per core
    (300, 2, 4),  # 128 files each -> 3, raised to two per core
    (1000, 2, 8),
    (1100, 2, 10),  # 9 partitions of ~122 would end with one core idle: 10, five full waves
    (1100, 3, 9),
    (5000, 16, 48),
])
def test_default_partitions_are_whole_waves_of_about_128_files(files, cores, partitions):
    assert default_partitions(files, cores) == partitions


@pytest.mark.parametrize("mode", ["keep", "skip"])
def test_an_empty_file_is_counted_and_gets_the_invalid_outcome(spark, tmp_path, capsys, mode):
    """Spark's file sources skip 0-byte files: 17 files must still give 17 rows (or 16 and a count)."""
    from zoo.cli.main import main

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for k in range(16):
        (folder / ("sub" if k % 2 else "") / f"{k:02d}.jpg").write_bytes(tiny.jpeg(20, 24, seed=k))
    (folder / "sub" / "empty.jpg").write_bytes(b"")
    (folder / ".hidden.jpg").write_bytes(b"")  # Spark's listing ignores hidden files: so do we
    (folder / "empty.txt").write_bytes(b"")  # not matched by the glob
    df = zoo.read_images(spark, str(folder), glob="*.jpg")
    assert df.count() == 17 and df.where("length = 0").count() == 1
    out = tmp_path / "features.parquet"
    code = main(["featurize", str(folder), "--glob", "*.jpg", "--model", tiny.tiny_model_path(),
                 "--preprocess", json.dumps(tiny.PREPROCESS), "--cut", "1",
                 "--output", str(out), "--master", "local[2]", "--handle-invalid", mode, "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["found"], summary["featurized"], summary["failed"]) == (17, 16, 1)
    rows = {os.path.basename(r["path"]): r for r in spark.read.parquet(str(out)).collect()}
    if mode == "keep":
        assert len(rows) == 17 and rows["empty.jpg"]["features"] is None and "0 bytes" in rows["empty.jpg"]["error"]
    else:
        assert len(rows) == 16 and "empty.jpg" not in rows
    main(["featurize", str(folder), "--glob", "*.jpg", "--model", tiny.tiny_model_path(),
          "--preprocess", json.dumps(tiny.PREPROCESS), "--output",
          str(tmp_path / "again.parquet"), "--master", "local[2]", "--handle-invalid", mode])
    line = capsys.readouterr().out
    assert "17 files found" in line and "16 featurized, 1 failed" in line


def test_check_model_on_a_local_master_agrees_with_the_driver(spark, mnv2, tmp_path, write_registry):
    from zoo.consistency import check_model, reference_images

    assert reference_images(3) == reference_images(3), "the same bytes every time, for every node"
    real = [c for p, c in reference_images(8) if p in ("reference/china.jpg", "reference/flower.jpg")]
    assert len(real) == 2 and all(imaging.header_size(c) == (640, 427) for c in real), "real photos shipped"
    reports, tolerance = check_model(spark, mnv2, cut=1)
    assert tolerance == 0.999, "an int8 model: the looser default"
    assert reports and all(r.ok and r.min_cosine > 0.99999 and r.images == 8 for r in reports)
    folder = tmp_path / "mine"
    folder.mkdir()
    for photo in sorted(PHOTOS.glob("*.JPEG"))[:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    mine, _ = check_model(spark, mnv2, cut=1, inputs=str(folder), tolerance=0.9999)
    assert all(r.ok and r.images == 3 for r in mine)

    stored = tmp_path / "reference.npz"
    check_model(spark, mnv2, cut=1, write_to=str(stored))
    pinned, _ = check_model(spark, mnv2, cut=1, reference=str(stored))
    assert pinned[0].node.endswith("/driver") and all(r.ok for r in pinned), "the driver is checked too"
    from zoo.errors import ChecksumError, ConfigError

    with pytest.raises(ConfigError, match="the stored reference .* is for model .* cut 1, not .* cut 2"):
        check_model(spark, mnv2, cut=2, reference=str(stored))
    import hashlib

    from conftest import MOBILENET, entry

    sha = hashlib.sha256(stored.read_bytes()).hexdigest()
    write_registry(*[entry(name, MOBILENET.read_bytes(), [MOBILENET.as_uri()], preprocess=IMAGENET,
                           files={"reference": {"sha256": pin, "sources": [stored.as_uri()]}})
                     for name, pin in (("mnv2-ref", sha), ("mnv2-badref", "2" * 64))])
    by_registry, _ = check_model(spark, "mnv2-ref", cut=1)
    assert by_registry[0].node.endswith("/driver") and all(r.ok for r in by_registry)
    with pytest.raises(ChecksumError, match="the reference of 'mnv2-badref'"):
        check_model(spark, "mnv2-badref", cut=1)


def test_check_model_takes_the_entrys_tolerance_and_a_node_without_a_gpu_fails_alone(spark, mobilenet_bytes,
                                                                                     write_registry, zoo_env):
    """A registry entry may declare the cosine its model must reach; `--device cuda` on a node where
    CUDA cannot run (this machine, and CI, have no GPU) is that node's failure, with the reason."""
    from conftest import MOBILENET, entry
    from zoo.consistency import check_model

    write_registry(entry("mnv2-strict", mobilenet_bytes, [MOBILENET.as_uri()], preprocess=IMAGENET, tolerance=0.99995))
    reports, tolerance = check_model(spark, "mnv2-strict", cut=1)
    assert tolerance == 0.99995 and all(r.ok for r in reports)
    assert check_model(spark, "mnv2-strict", cut=1, tolerance=0.5)[1] == 0.5, "the command line wins"
    from zoo.runtime.sessions import cuda_available

    if cuda_available():
        pytest.skip("this machine has a working GPU: the no-GPU outcome cannot be produced here")
    on_gpu, _ = check_model(spark, "mnv2-strict", cut=1, device="cuda")
    assert on_gpu and all(not r.ok and "DeviceError" in (r.problem or "") for r in on_gpu), [r.problem for r in on_gpu]
