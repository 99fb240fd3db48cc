"""object_detector, detection_crops, `zoo detect`: the catalogue's detectors run, and match their authors.

Real models from ../shared: the catalogue's two Ultra-Light face detectors (served through a mirror folder,
so the registry entries themselves are exercised) and YOLOX-Nano (registered with `zoo add --detector
yolox`). Families without a real model here run graphs built with the same input/output contract as the
catalogue's entries, compared with an independent reference of the authors' postprocessing
(tests/detection_reference.py, which imports nothing of sparkzoo).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, entry, missing, zoo_cmd

import detection_reference as ref

FACES = SHARED / "data" / "faces"
PHOTOS = SHARED / "data" / "imagenet-sample"
RFB = {"version-RFB-320": (240, 320), "version-RFB-640": (480, 640)}
YOLOX = SHARED / "models" / "yolox_nano.onnx"


def _shared(path: Path) -> Path:
    if not path.exists():
        missing(f"{path} is absent: the shared test material is not beside the checkout")
    return path


@pytest.fixture
def face_mirror(zoo_env, tmp_path, monkeypatch):
    """The catalogue's Ultra-Light entries served from a mirror folder (<base>/sha256/<hex>): byte-identical files."""
    mirror = tmp_path / "mirror" / "sha256"
    mirror.mkdir(parents=True)
    for name in RFB:
        data = _shared(SHARED / "models" / f"{name}.onnx").read_bytes()
        (mirror / hashlib.sha256(data).hexdigest()).write_bytes(data)
    monkeypatch.setenv("ZOO_MIRRORS", mirror.parent.as_uri())
    return mirror


def _images(spark, folder: Path, names: list[str] | None = None):
    files = sorted(folder.glob("*.jp*g")) if names is None else [folder / n for n in names]
    return spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in files], "path string, content binary")


def _ours(rows) -> dict[str, list]:
    return {r.path: [(d.classIndex, d.score, d.x0, d.y0, d.x1, d.y1) for d in r.detections] for r in rows}


def _compare(ours: dict[str, list], reference: dict[str, list]) -> tuple[int, float, float]:
    """Every image: the same count, and every reference box matched; (boxes, min IoU, max |score diff|)."""
    total, low, high = 0, 1.0, 0.0
    for path, expected in reference.items():
        got = ours[path]
        assert len(got) == len(expected), f"{path}: {len(got)} boxes, the authors' code finds {len(expected)}"
        matched, worst_iou, worst_score = ref.match(got, expected)
        assert matched == len(expected), f"{path}: only {matched} of {len(expected)} reference boxes matched"
        total, low, high = total + matched, min(low, worst_iou), max(high, worst_score)
    return total, low, high


@pytest.mark.slow
def test_the_catalogue_face_detectors_match_the_authors_postprocessing(spark, face_mirror):
    import cv2
    import onnxruntime as ort

    from zoo.stages.object_detector import ObjectDetector

    df = _images(spark, _shared(FACES))
    for name, size in RFB.items():
        rows = ObjectDetector(modelName=name).transform(df).select("path", "detections").collect()
        session = ort.InferenceSession(str(SHARED / "models" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        reference = {}
        for p in sorted(FACES.glob("*.jpg")):
            h, w = cv2.imread(str(p)).shape[:2]
            reference[p.as_uri()] = ref.clip(ref.ultraface(session, str(p), size), h, w)  # we clip; the demo does not
        total, low, high = _compare(_ours(rows), reference)
        assert total >= 40, f"{name}: only {total} faces in 8 group photos"
        assert low >= 0.99 and high <= 1e-4, f"{name}: IoU down to {low}, scores up to {high} apart"
        assert all(d.label == "face" for r in rows for d in r.detections)
        # sorted by score, inside the image
        for r in rows:
            scores = [d.score for d in r.detections]
            assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_yolox_added_with_its_family_matches_the_authors_demo_on_everyday_photos(spark, zoo_env):
    import cv2
    import onnxruntime as ort

    import zoo
    from zoo.stages.object_detector import ObjectDetector

    added = zoo.add(_shared(YOLOX), name="yolox-nano", detector="yolox")
    assert added.task == "object-detection" and added.labels == "coco-80"
    assert added.preprocess["resize"] == {"mode": "letterbox", "size": [416, 416], "interpolation": "opencv-bilinear",
                                          "pad": 114, "align": "top_left"}
    names = sorted(p.name for p in _shared(PHOTOS).glob("*.JPEG"))[:40]
    rows = ObjectDetector(modelName="yolox-nano").transform(_images(spark, PHOTOS, names)).collect()
    session = ort.InferenceSession(str(YOLOX), providers=["CPUExecutionProvider"])
    reference = {}
    for n in names:
        h, w = cv2.imread(str(PHOTOS / n)).shape[:2]
        reference[(PHOTOS / n).as_uri()] = ref.clip(ref.yolox(session, str(PHOTOS / n)), h, w)
    total, low, high = _compare(_ours(rows), reference)
    assert total >= 20, f"only {total} objects in 40 everyday photos"
    assert low >= 0.99 and high <= 1e-4, f"IoU down to {low}, scores up to {high} apart"
    coco = (SHARED / "reference" / "coco-80-classes.txt").read_text().split("\n")
    assert all(d.label == coco[d.classIndex] for r in rows for d in r.detections)


def _graph(inputs, outputs, nodes, inits):
    from onnx import helper

    model = helper.make_model(helper.make_graph(nodes, "contract", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _constant_per_image(name: str, value: np.ndarray, image: str, nodes: list, inits: list, axes=(1, 2, 3)):
    """``value`` repeated over the batch of ``image`` (a graph output that does not depend on the pixels)."""
    from onnx import helper, numpy_helper

    inits.append(numpy_helper.from_array(value[None].astype(value.dtype), f"{name}_value"))
    nodes += [helper.make_node("Cast", [image], [f"{name}_f"], to=1),
              helper.make_node("ReduceMean", [f"{name}_f"], [f"{name}_m"], axes=list(axes), keepdims=0),
              helper.make_node("Mul", [f"{name}_m", "zero"], [f"{name}_z"])]
    z = f"{name}_z"
    for k in range(value.ndim):
        nodes.append(helper.make_node("Unsqueeze", [z, "minus_one"], [f"{z}{k}"]))
        z = f"{z}{k}"
    nodes.append(helper.make_node("Cast", [z], [f"{z}_t"], to={np.float32: 1, np.int64: 7}[value.dtype.type]))
    nodes.append(helper.make_node("Add", [f"{z}_t", f"{name}_value"], [name]))


def _tf_ssd_graph() -> bytes:
    """The TF Object Detection API contract of ssd_mobilenet_v1_12: uint8 NHWC in; boxes (ymin, xmin, ymax,
    xmax, normalised), float class ids (COCO's 91), scores and num_detections out, best first."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
                        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.3, 0.0, 1.0, 0.4], [0.0, 0.0, 0.2, 0.2]], np.float32)
    _constant_per_image("detection_boxes", boxes, "inputs", nodes, inits)
    _constant_per_image("detection_classes", np.array([1.0, 18.0, 3.0], np.float32), "inputs", nodes, inits)
    _constant_per_image("detection_scores", np.array([0.9, 0.6, 0.55], np.float32), "inputs", nodes, inits)
    _constant_per_image("num_detections", np.array(2.0, np.float32), "inputs", nodes, inits)
    f = TensorProto.FLOAT
    return _graph([helper.make_tensor_value_info("inputs", TensorProto.UINT8, ["N", "H", "W", 3])],
                  [helper.make_tensor_value_info("detection_boxes", f, ["N", 3, 4]),
                   helper.make_tensor_value_info("detection_classes", f, ["N", 3]),
                   helper.make_tensor_value_info("detection_scores", f, ["N", 3]),
                   helper.make_tensor_value_info("num_detections", f, ["N"])], nodes, inits)


def test_tf_object_detection_api_outputs_are_read_as_its_authors_document(spark, zoo_env, write_registry, tmp_path):
    from zoo.stages.object_detector import ObjectDetector

    outputs = {"boxes": "detection_boxes", "scores": "detection_scores", "classes": "detection_classes",
               "count": "num_detections"}
    path = tmp_path / "ssd.onnx"
    data = _tf_ssd_graph()
    path.write_bytes(data)
    from zoo.hub.presets import detector

    pre, recipe, labels = detector("tf-ssd", (300, 300))
    write_registry(entry("tf-ssd-like", data, [path.as_uri()], task="object-detection", preprocess=pre, labels=labels,
                         detection={**recipe, "outputs": outputs},
                         input={"name": "inputs", "layout": "NHWC", "shape": [None, None, None, 3], "dtype": "uint8"}))
    names = sorted(p.name for p in _shared(PHOTOS).glob("*.JPEG"))[:3]
    rows = ObjectDetector(modelName="tf-ssd-like", batchSize=2).transform(_images(spark, PHOTOS, names)).collect()
    import cv2

    for r in rows:
        h, w = cv2.imread(r.path.removeprefix("file://")).shape[:2]
        # num_detections = 2: the third box is padding, whatever its score; class 18 of COCO's 91 ids is dog
        expected = [(1, "person", 0.9, 0.2 * w, 0.1 * h, 0.6 * w, 0.5 * h), (18, "dog", 0.6, 0.0, 0.3 * h, 0.4 * w, h)]
        got = [(d.classIndex, d.label, d.score, d.x0, d.y0, d.x1, d.y1) for d in r.detections]
        assert len(got) == 2
        for g, e in zip(got, expected):
            assert g[:2] == e[:2] and g[2] == pytest.approx(e[2]) and np.allclose(g[3:], e[3:], atol=1e-3)


def test_yolov2_region_layer_matches_a_cell_by_cell_reference(spark, zoo_env, write_registry, tmp_path):
    """tinyyolov2's contract ([N, 125, 13, 13], VOC anchors): a seeded grid, decoded by sparkzoo (vectorised)
    and by the literal per-cell, per-anchor reading of the region layer."""
    import cv2
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.presets import detector
    from zoo.stages.object_detector import ObjectDetector

    rng = np.random.default_rng(7)
    grid = rng.normal(0, 1, (125, 13, 13)).astype(np.float32)
    for k in range(5):
        grid[k * 25 + 4] = rng.normal(-5, 2.5, (13, 13))  # objectness: a few confident cells
        grid[k * 25 + 5:k * 25 + 25] *= 4  # peaked class scores
    nodes, inits = [], [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
                        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    _constant_per_image("grid", grid, "image", nodes, inits)
    data = _graph([helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 416, 416])],
                  [helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["N", 125, 13, 13])], nodes, inits)
    path = tmp_path / "tiny-yolov2-like.onnx"
    path.write_bytes(data)
    pre, recipe, labels = detector("yolov2-voc", (416, 416))
    write_registry(entry("tinyyolov2-like", data, [path.as_uri()], task="object-detection", preprocess=pre,
                         labels=labels, detection=recipe,
                         input={"name": "image", "layout": "NCHW", "shape": [None, 3, 416, 416], "dtype": "float32"}))
    names = sorted(p.name for p in _shared(PHOTOS).glob("*.JPEG"))[:3]
    rows = ObjectDetector(modelName="tinyyolov2-like", batchSize=2).transform(_images(spark, PHOTOS, names)).collect()
    reference = {}
    for n in names:
        h, w = cv2.imread(str(PHOTOS / n)).shape[:2]
        reference[(PHOTOS / n).as_uri()] = ref.clip(ref.yolo_region(grid, recipe["anchors"], (416, 416), 0.3, 0.5,
                                                                    (h, w)), h, w)
    total, low, high = _compare(_ours(rows), reference)
    assert total >= 3 and low >= 0.99 and high <= 1e-4, (total, low, high)


# -- errors: named, before Spark runs a task -----------------------------------------------------------------------
def test_a_classifier_is_no_detector_and_a_detector_no_classifier(spark, face_mirror, mnv2):
    from zoo.errors import StageError
    from zoo.stages.image_classifier import ImageClassifier
    from zoo.stages.object_detector import ObjectDetector

    df = _images(spark, _shared(FACES), ["face-5.jpg"])
    with pytest.raises(StageError, match=r"is not a detector \(task image-classification\); use image_classifier"):
        ObjectDetector(modelName=mnv2).transform(df)  # transform is lazy: raised on the driver, no task ran
    with pytest.raises(StageError, match="'version-RFB-320' is an object detector, not a classifier: use object_detector"):
        ImageClassifier(modelName="version-RFB-320").transform(df)
    # a recipe that does not fit the graph: the model and the output named
    rfb = str(SHARED / "models" / "version-RFB-320.onnx")
    with pytest.raises(StageError, match=r"output 'grid' \('scores', shape \[1, 4420, 2\]\) does not fit the yolox"):
        ObjectDetector(modelName=rfb, detection='{"family": "yolox"}').transform(df)
    with pytest.raises(StageError, match=r"the recipe's boxes output 'bbox' is not an output of the graph \(its outputs: "
                                         r"\['scores', 'boxes'\]\)"):
        ObjectDetector(modelName=rfb, detection=json.dumps(
            {"family": "decoded", "outputs": {"boxes": "bbox", "scores": "scores", "classes": "scores"}})).transform(df)
    with pytest.raises(StageError, match=r"classes \['cat'\] are not in the model's label set \(2 names"):
        ObjectDetector(modelName="version-RFB-320", classes=["cat"]).transform(df)
    with pytest.raises(StageError, match="no registry model, so nothing says how to decode"):
        ObjectDetector(modelName=str(_shared(YOLOX))).transform(df)


def test_zoo_detect_prints_writes_and_draws_and_points_classifiers_elsewhere(spark, face_mirror, mnv2, tmp_path,
                                                                             capsys):
    """Through the CLI's entry point in this process (the suite's Spark session is reused, as inside a
    running application; the README quick start runs `zoo detect --draw` as a separate process, and checks
    that no ONNX Runtime warning about weights listed as graph inputs reaches the user): parquet, drawn
    images, a table, and each task's command named when the other is asked for, before Spark runs."""
    import cv2
    import pyarrow.parquet as pq

    from zoo.cli.main import main

    faces = tmp_path / "faces"
    faces.mkdir()
    for n in ("face-2.jpg", "face-5.jpg"):
        shutil.copy(_shared(FACES / n), faces / n)
    (faces / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    drawn, out = tmp_path / "drawn", tmp_path / "faces.parquet"
    assert main(["detect", str(faces), "--model", "version-RFB-320", "--output", str(out), "--draw", str(drawn)]) == 0
    printed = capsys.readouterr().out
    assert "3 files found" in printed and "1 failed" in printed and "2 drawn into" in printed
    by_name = {Path(r["path"]).name: r for r in pq.read_table(out).to_pylist()}
    assert by_name["broken.jpg"]["detections"] is None and "JPEG" in by_name["broken.jpg"]["error"]
    assert by_name["face-5.jpg"]["detections"] and by_name["face-2.jpg"]["detections"]
    for name in ("face-2.jpg", "face-5.jpg"):
        original, marked = cv2.imread(str(faces / name)), cv2.imread(str(drawn / name))
        box = by_name[name]["detections"][0]
        rows, x = slice(int(box["y0"]), int(box["y1"])), int(box["x0"])  # the box's left edge is drawn
        assert original.shape == marked.shape
        assert np.abs(marked[rows, x].astype(int) - original[rows, x].astype(int)).mean() > 30
    assert main(["detect", str(faces), "--model", "version-RFB-320", "--threshold", "0.9", "--classes", "face"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["FILE", "#", "LABEL", "SCORE"] and "(failed:" in "\n".join(table)
    assert sum(" face " in line for line in table) == len(by_name["face-5.jpg"]["detections"]) + \
        len([d for d in by_name["face-2.jpg"]["detections"] if d["score"] > 0.9])
    assert main(["predict", str(faces), "--model", "version-RFB-320"]) == 10  # a stage error
    wrong = capsys.readouterr().err
    assert "use `zoo detect INPUT --model version-RFB-320`" in wrong and "starting Spark" not in wrong
    assert main(["detect", str(faces), "--model", mnv2]) == 10
    other = capsys.readouterr().err
    assert "use image_classifier (`zoo predict`)" in other and "starting Spark" not in other


# -- detect, then classify -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_detect_then_classify_is_one_pipeline_that_saves_and_loads(spark, face_mirror, mnv2, tmp_path):
    from pyspark.ml import PipelineModel

    import zoo

    df = _images(spark, _shared(FACES), ["face-2.jpg", "face-5.jpg", "face-3.jpg"])
    df = df.union(spark.createDataFrame([("file:///broken.jpg", b"nope")], df.schema))
    built = zoo.pipeline("version-RFB-320", detect=True, then=mnv2, margin=0.2, handleInvalid="keep",
                         then_params={"k": 2})
    model = built.fit(df)
    out = model.transform(df).collect()
    detections = {r.path: r.detections for r in zoo.pipeline("version-RFB-320", detect=True, handleInvalid="keep")
                  .fit(df).transform(df).collect()}
    assert len(out) == sum(len(d or []) or 1 for d in detections.values() if d != [])
    for r in out:
        if r.path == "file:///broken.jpg":  # the detector's error reaches the end: one row, no crop
            assert r.detection is None and r.crop is None and r.error and r.prediction is None
            continue
        assert r.detection.label == "face" and r.crop and r.label and len(r.topK) == 2
        assert r.detection in detections[r.path]
    model.write().save(str(tmp_path / "p"))
    again = PipelineModel.load(str(tmp_path / "p")).transform(df).collect()
    assert [(r.path, r.detection, r.label) for r in again] == [(r.path, r.detection, r.label) for r in out]


def test_crops_keep_margins_inside_the_image():
    from zoo.stages.workers.detections import crop_box

    pixels = np.arange(50 * 40 * 3, dtype=np.uint8).reshape(50, 40, 3)
    assert crop_box(pixels, dict(x0=10.0, y0=10.0, x1=20.0, y1=30.0), 0.0).shape == (20, 10, 3)
    assert crop_box(pixels, dict(x0=10.0, y0=10.0, x1=20.0, y1=30.0), 0.5).shape == (40, 20, 3)
    assert crop_box(pixels, dict(x0=0.0, y0=0.0, x1=40.0, y1=50.0), 0.5).shape == (50, 40, 3)
    assert crop_box(pixels, dict(x0=39.5, y0=49.5, x1=40.0, y1=50.0), 0.0).shape == (1, 1, 3)


def test_small_images_and_the_fixed_batch_of_one(spark, zoo_env):
    """YOLOX-Nano's graph fixes the batch at 1 (run one image per call) and takes 416x416: a 40x30 photo
    is letterboxed up; its boxes stay inside it."""
    import cv2

    import zoo
    from zoo.stages.object_detector import ObjectDetector

    zoo.add(_shared(YOLOX), name="yolox-nano", detector="yolox")
    big = cv2.imread(str(sorted(_shared(PHOTOS).glob("*.JPEG"))[0]))
    small = cv2.imencode(".jpg", cv2.resize(big, (40, 30)))[1].tobytes()
    df = spark.createDataFrame([("small", small), ("big", cv2.imencode(".jpg", big)[1].tobytes())],
                               "path string, content binary")
    rows = {r.path: r.detections for r in ObjectDetector(modelName="yolox-nano", batchSize=8, scoreThreshold=0.05)
            .transform(df).collect()}
    assert rows["big"], "a 0.05 threshold finds something in a photo"
    for d in rows["small"]:
        assert 0 <= d.x0 <= d.x1 <= 40 and 0 <= d.y0 <= d.y1 <= 30


def _jpeg(tmp_path, name: str, width: int, height: int, seed: int) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    path = tmp_path / name
    path.write_bytes(cv2.imencode(".jpg", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))[1].tobytes())
    return path


def test_yolov4_heads_match_the_authors_notebook(spark, zoo_env, write_registry, tmp_path):
    """yolov4's contract (NHWC 416 in; three heads [N, S, S, 3, 85] out, objectness and classes already
    sigmoid): planted detections decoded by sparkzoo and by the ONNX Model Zoo notebook's postprocessing.
    The photos' sizes put the letterboxed image on whole pixels: the notebook maps boxes back with a
    fractional offset ((416 - ratio * w) / 2) while the image sits at an integer one, and sparkzoo follows
    the pixels."""
    import cv2
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.presets import detector
    from zoo.stages.object_detector import ObjectDetector

    pre, recipe, labels = detector("yolov4", (416, 416))
    rng = np.random.default_rng(11)
    heads = []
    for k, size in enumerate((52, 26, 13)):
        head = np.zeros((size, size, 3, 85), np.float32)
        head[..., :2] = rng.normal(0, 1, (size, size, 3, 2))
        head[..., 2:4] = -2.5
        head[..., 4] = 0.01
        head[..., 5:] = rng.uniform(0, 0.2, (size, size, 3, 80))
        for _ in range(6):  # confident cells near the middle, where every test photo has pixels
            y, x, a = int(rng.integers(size * 2 // 5, size * 3 // 5)), int(rng.integers(size * 2 // 5, size * 3 // 5)), \
                int(rng.integers(0, 3))
            head[y, x, a, 4] = rng.uniform(0.5, 1.0)
            head[y, x, a, 5 + int(rng.integers(0, 80))] = rng.uniform(0.6, 1.0)
        heads.append(head)
    nodes, inits = [], [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
                        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    names = ("Identity:0", "Identity_1:0", "Identity_2:0")
    for name, head in zip(names, heads):
        _constant_per_image(name, head, "input_1:0", nodes, inits)
    data = _graph([helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["N", 416, 416, 3])],
                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", s, s, 3, 85])
                   for n, s in zip(names, (52, 26, 13))], nodes, inits)
    path = tmp_path / "yolov4-like.onnx"
    path.write_bytes(data)
    write_registry(entry("yolov4-like", data, [path.as_uri()], task="object-detection", preprocess=pre, labels=labels,
                         detection=recipe,
                         input={"name": "input_1:0", "layout": "NHWC", "shape": [None, 416, 416, 3], "dtype": "float32"}))
    photos = [_jpeg(tmp_path, "square.jpg", 416, 416, 1), _jpeg(tmp_path, "tall.jpg", 200, 400, 2),
              _jpeg(tmp_path, "wide.jpg", 832, 416, 3)]
    df = spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in photos], "path string, content binary")
    rows = ObjectDetector(modelName="yolov4-like", batchSize=2).transform(df).collect()
    reference = {}
    for p in photos:
        h, w = cv2.imread(str(p)).shape[:2]
        reference[p.as_uri()] = ref.clip(ref.yolov4([hd[None] for hd in heads], recipe["anchors"], recipe["strides"],
                                                    recipe["xy_scale"], (h, w)), h, w)
    total, low, high = _compare(_ours(rows), reference)
    assert total >= 9 and low >= 0.99 and high <= 1e-4, (total, low, high)


def test_yolov3_takes_each_images_size_and_reads_the_selected_indices(spark, zoo_env, write_registry, tmp_path):
    """The ONNX Model Zoo YOLOv3's contract: the image and its (height, width) in, NMS inside the graph, boxes
    (y0, x0, y1, x1) in the original image's pixels, scores [1, 80, boxes], selected (batch, class, box)
    indices out. Here the boxes are fractions of the fed size, so a wrong size moves them."""
    import cv2
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.presets import detector
    from zoo.stages.object_detector import ObjectDetector

    fractions = np.array([[[0.1, 0.2, 0.5, 0.6], [0.3, 0.1, 0.9, 0.5], [0.0, 0.0, 1.0, 1.0]]], np.float32)
    scores = np.zeros((1, 80, 3), np.float32)
    scores[0, 0, 0], scores[0, 16, 1], scores[0, 2, 2] = 0.9, 0.7, 0.65
    indices = np.array([[0, 0, 0], [0, 16, 1]], np.int32)  # the graph's NMS kept two of the three
    inits = [numpy_helper.from_array(fractions, "fractions"), numpy_helper.from_array(scores, "score_values"),
             numpy_helper.from_array(indices, "selected"), numpy_helper.from_array(np.array([0.0], np.float32), "zero")]
    nodes = [helper.make_node("Concat", ["image_shape", "image_shape"], ["hwhw"], axis=1),
             helper.make_node("Unsqueeze", ["hwhw", "one"], ["hwhw3"]),
             helper.make_node("Mul", ["fractions", "hwhw3"], ["boxes"]),
             helper.make_node("ReduceMean", ["input_1"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["score_values", "z"], ["scores"]),
             helper.make_node("Identity", ["selected"], ["indices"])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    data = _graph([helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["N", 3, "H", "W"]),
                   helper.make_tensor_value_info("image_shape", TensorProto.FLOAT, ["N", 2])],
                  [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
                   helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 80, None]),
                   helper.make_tensor_value_info("indices", TensorProto.INT32, [None, 3])], nodes, inits)
    path = tmp_path / "yolov3-like.onnx"
    path.write_bytes(data)
    pre, recipe, labels = detector("yolov3", (416, 416))
    write_registry(entry("yolov3-like", data, [path.as_uri()], task="object-detection", preprocess=pre, labels=labels,
                         detection=recipe,
                         input={"name": "input_1", "layout": "NCHW", "shape": [None, 3, None, None], "dtype": "float32"}))
    photos = [_jpeg(tmp_path, "a.jpg", 300, 200, 1), _jpeg(tmp_path, "b.jpg", 123, 457, 2)]
    df = spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in photos], "path string, content binary")
    rows = ObjectDetector(modelName="yolov3-like", batchSize=4).transform(df).collect()
    reference = {}
    for p in photos:
        h, w = cv2.imread(str(p)).shape[:2]
        reference[p.as_uri()] = ref.yolov3_selected(fractions * np.array([h, w, h, w], np.float32), scores, indices)
    total, low, high = _compare(_ours(rows), reference)
    assert total == 4 and low >= 0.99 and high <= 1e-4, (total, low, high)
    assert {d.label for r in rows for d in r.detections} == {"person", "dog"}


def test_zoo_add_registers_a_detector_of_a_known_family(zoo_env):
    """`zoo add FILE --detector yolox`: the authors' pixels for the file's input size, the decoding recipe
    and COCO's 80 names; a family the file's outputs do not fit is refused when the stage runs it."""
    added = json.loads(zoo_cmd("add", str(_shared(YOLOX)), "--name", "yx", "--detector", "yolox", "--json").stdout)
    assert added["task"] == "object-detection" and added["labels"] == "coco-80"
    assert added["detection"] == {"family": "yolox"}
    assert added["preprocess"]["resize"]["mode"] == "letterbox" and added["preprocess"]["color_order"] == "BGR"
    info = json.loads(zoo_cmd("info", "yx", "--json").stdout)
    assert info["detection"] == {"family": "yolox"} and info["label_set"]["count"] == 80
    wrong = zoo_cmd("add", str(_shared(YOLOX)), "--name", "yx2", "--detector", "yolov5", check=None)
    assert wrong.returncode == 2 and "invalid choice: 'yolov5'" in wrong.stderr


def test_weights_listed_as_graph_inputs_become_constants_in_the_optimised_file(zoo_env):
    """The Ultra-Light files list their ~200 weights as graph inputs: ONNX Runtime then may neither fold nor
    fuse them (3-4x slower, benchmarks/RESULTS.md) and warns about each. The node's optimised file is built
    from the graph without them: one input, the same outputs."""
    import onnx
    import onnxruntime as ort

    from zoo.hub import derived, optimized
    from zoo.hub.cache import model_cache

    rfb = _shared(SHARED / "models" / "version-RFB-320.onnx")
    assert len(onnx.load(str(rfb)).graph.input) > 100
    assert optimized._weights_as_constants(str(_shared(YOLOX))) == str(YOLOX)  # nothing to change: the file itself
    cache = model_cache()
    sha = hashlib.sha256(rfb.read_bytes()).hexdigest()
    d = optimized.derivation(sha)
    assert optimized.build(rfb, d, cache)
    built = cache.optimized_path(derived.read(cache, d).output.sha256)
    assert [i.name for i in onnx.load(str(built)).graph.input] == ["input"]
    assert optimized.same_results(rfb, str(built)) is None
    x = np.random.default_rng(0).random((1, 3, 240, 320), dtype=np.float32)
    a = ort.InferenceSession(str(rfb), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(built), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert all(np.allclose(u, v, atol=1e-5) for u, v in zip(a, b))


def test_faster_rcnn_takes_each_image_at_its_own_size_without_a_batch_axis(spark, zoo_env, write_registry, tmp_path):
    """The ONNX Model Zoo Faster R-CNN's contract: one image [3, H, W] of its own size (shorter side 800,
    padded to a multiple of 32), boxes in that image's pixels, labels counting the background as 0. Here
    the boxes are fractions of the padded input's size, so a wrong size or padding moves them; compared
    with the README's own preprocessing and display loop."""
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.presets import detector
    from zoo.stages.object_detector import ObjectDetector

    fractions = np.array([[0.1, 0.2, 0.5, 0.6], [0.3, 0.1, 0.9, 0.5], [0.0, 0.0, 1.0, 1.0]], np.float32)
    inits = [numpy_helper.from_array(fractions, "fractions"),
             numpy_helper.from_array(np.array([1, 17, 3], np.int64), "label_values"),
             numpy_helper.from_array(np.array([0.95, 0.8, 0.5], np.float32), "score_values"),
             numpy_helper.from_array(np.array([2, 1, 2, 1], np.int64), "whwh"),
             numpy_helper.from_array(np.array([0.0], np.float32), "zero")]
    nodes = [helper.make_node("Shape", ["image"], ["shape"]),
             helper.make_node("Gather", ["shape", "whwh"], ["size"], axis=0),
             helper.make_node("Cast", ["size"], ["sizef"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["fractions", "sizef"], ["6379"]),
             helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["score_values", "z"], ["6383"]),
             helper.make_node("Identity", ["label_values"], ["6381"])]
    data = _graph([helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, "height", "width"])],
                  [helper.make_tensor_value_info("6379", TensorProto.FLOAT, ["nbox", 4]),
                   helper.make_tensor_value_info("6381", TensorProto.INT64, ["nbox"]),
                   helper.make_tensor_value_info("6383", TensorProto.FLOAT, ["nbox"])], nodes, inits)
    path = tmp_path / "faster-rcnn-like.onnx"
    path.write_bytes(data)
    pre, recipe, labels = detector("faster-rcnn", (800, 800))
    write_registry(entry("faster-rcnn-like", data, [path.as_uri()], task="object-detection", preprocess=pre,
                         labels=labels, detection={**recipe, "outputs": {"boxes": "6379", "classes": "6381",
                                                                         "scores": "6383"}},
                         input={"name": "image", "layout": "NCHW", "shape": [3, None, None], "dtype": "float32"}))
    photos = [_jpeg(tmp_path, "a.jpg", 400, 300, 1), _jpeg(tmp_path, "b.jpg", 427, 640, 2),
              _jpeg(tmp_path, "c.jpg", 333, 333, 3)]
    df = spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in photos], "path string, content binary")
    rows = ObjectDetector(modelName="faster-rcnn-like", batchSize=4).transform(df).collect()
    reference = {}
    for p in photos:
        padded, ratio = ref.faster_rcnn_input(str(p))
        h, w = padded.shape[1:]
        reference[p.as_uri()] = ref.faster_rcnn(fractions * np.array([w, h, w, h], np.float32),
                                                np.array([1, 17, 3]), np.array([0.95, 0.8, 0.5]), ratio)
    from PIL import Image

    clipped = {p.as_uri(): ref.clip(reference[p.as_uri()], *Image.open(p).size[::-1]) for p in photos}
    total, low, high = _compare(_ours(rows), clipped)
    assert total == 6 and low >= 0.99 and high <= 1e-4, (total, low, high)
    assert [d.label for d in rows[0].detections] == ["person", "dog"]


def test_retinanet_heads_decode_as_retinanet_examples(spark, zoo_env, write_registry, tmp_path):
    """retinanet-9's contract (five class heads [N, 9 x 80, H, W] after sigmoid, five box-delta heads [N, 36, H, W],
    strides 8-128), on a small input: seeded heads decoded by sparkzoo and by retinanet-examples' decode and NMS
    (written out literally), for a photo at the input's size and one at twice it."""
    from onnx import TensorProto, helper, numpy_helper

    from zoo.hub.presets import detector
    from zoo.stages.object_detector import ObjectDetector

    size = (64, 96)
    pre, recipe, labels = detector("retinanet", size)
    rng = np.random.default_rng(5)
    cls_heads, box_heads = [], []
    for stride in (8, 16, 32, 64, 128):
        h, w = -(-size[0] // stride), -(-size[1] // stride)
        cls = rng.uniform(0, 0.03, (720, h, w)).astype(np.float32)
        for _ in range(4):  # confident anchors
            cls[int(rng.integers(0, 720)), int(rng.integers(0, h)), int(rng.integers(0, w))] = rng.uniform(0.3, 0.99)
        cls_heads.append(cls)
        box_heads.append(rng.normal(0, 0.2, (36, h, w)).astype(np.float32))
    nodes, inits = [], [numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
                        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    names = [f"output{k}" for k in range(1, 11)]
    for name, head in zip(names, cls_heads + box_heads):
        _constant_per_image(name, head, "input", nodes, inits)
    data = _graph([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *size])],
                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *head.shape])
                   for n, head in zip(names, cls_heads + box_heads)], nodes, inits)
    path = tmp_path / "retinanet-like.onnx"
    path.write_bytes(data)
    write_registry(entry("retinanet-like", data, [path.as_uri()], task="object-detection", preprocess=pre,
                         labels=labels, detection=recipe,
                         input={"name": "input", "layout": "NCHW", "shape": [None, 3, *size], "dtype": "float32"}))
    photos = [_jpeg(tmp_path, "same.jpg", 96, 64, 1), _jpeg(tmp_path, "twice.jpg", 192, 128, 2)]
    df = spark.createDataFrame([(p.as_uri(), p.read_bytes()) for p in photos], "path string, content binary")
    rows = ObjectDetector(modelName="retinanet-like", batchSize=2).transform(df).collect()
    from zoo.runtime.detection import DEFAULTS

    d = DEFAULTS["retinanet"]
    reference = {}
    for p, k in zip(photos, (1.0, 2.0)):
        found = ref.retinanet(cls_heads, box_heads, d["strides"], d["ratios"], d["scales"], (k, k))
        reference[p.as_uri()] = ref.clip(found, 64 * k, 96 * k)
    total, low, high = _compare(_ours(rows), reference)
    assert total >= 10 and low >= 0.99 and high <= 1e-4, (total, low, high)


def test_the_recipe_follows_the_registry_in_use_not_the_first_one_read(zoo_env, write_registry, tmp_path,
                                                                       monkeypatch):
    """The driver keeps what it learned of a detector per process: under another registry the same name is
    another model, with its own recipe."""
    from zoo.stages.object_detector import detector_of
    from zoo.testing import tiny

    data = tiny.tiny_detector_bytes()
    path = tmp_path / "tiny-detector.onnx"
    path.write_bytes(data)
    found = []
    for threshold in (0.5, 0.9):
        monkeypatch.delenv("ZOO_REGISTRY", raising=False)
        write_registry(entry("same-name", data, [path.as_uri()], task="object-detection",
                             preprocess=tiny.DETECTOR_PREPROCESS, labels="face",
                             detection={**tiny.DETECTOR_RECIPE, "score_threshold": threshold},
                             input={"name": "input", "layout": "NCHW", "shape": [None, 3, 24, 32],
                                    "dtype": "float32"}))
        found.append(detector_of("same-name").recipe.score_threshold)
    assert found == [0.5, 0.9]
