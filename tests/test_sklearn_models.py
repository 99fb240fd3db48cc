"""onnx_model scores converted scikit-learn and LightGBM models: ZipMap probabilities, int64 and string labels,
string inputs. Real models trained on data sets bundled with scikit-learn (no network), converted
with skl2onnx; every Spark prediction is compared with the native library's on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
import skl2onnx  # scikit-learn and skl2onnx are in the test extras: missing, the suite fails here
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import zoo

OPSET = {"": 17, "ai.onnx.ml": 3}
REVIEWS = [  # a small corpus the test holds: camera-trap notes, labelled by what they report
    ("a snow leopard walked past the camera at night", "cat"), ("the leopard came back to the rocks", "cat"),
    ("two snow leopards near the ridge", "cat"), ("a leopard marked the trail", "cat"),
    ("an ibex herd grazed on the slope", "ungulate"), ("ibex and blue sheep on the cliffs", "ungulate"),
    ("blue sheep crossed the valley at dawn", "ungulate"), ("a young ibex alone by the stream", "ungulate"),
    ("only wind and snow in every frame", "empty"), ("nothing but rocks and snow", "empty"),
    ("empty frames all week, some wind", "empty"), ("the camera saw nothing but the valley", "empty"),
]


def _onnx(model, sample=None, **kwargs) -> bytes:
    onx = skl2onnx.to_onnx(model, sample, target_opset=OPSET, **kwargs)
    onx.ir_version = min(onx.ir_version, 10)  # the installed ONNX Runtime reads IR <= 10..13
    return onx.SerializeToString()


def _score(spark, model_bytes: bytes, df, feed: dict, fetch: dict, tmp_path, name: str):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model_bytes)
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict=feed, fetchDict=fetch, batchSize=7)
    return sorted(stage.transform(df.repartition(3)).collect(), key=lambda r: r["id"])


@pytest.mark.parametrize("data, model", [
    (load_breast_cancer, make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    (load_wine, RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0)),
])
def test_converted_classifiers_give_the_native_labels_and_probabilities(spark, zoo_env, tmp_path, data, model):
    X, y = data(return_X_y=True)
    X = X.astype(np.float32)
    model.fit(X, y)
    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(X)], "id int, x array<double>")
    rows = _score(spark, _onnx(model, X[:1]), df, {"X": "x"}, {"label": "output_label", "p": "output_probability"},
                  tmp_path, type(model).__name__)
    assert len(rows) == len(X), "every row scored"
    assert [r["label"] for r in rows] == model.predict(X).tolist(), "labels exactly"
    np.testing.assert_allclose([r["p"] for r in rows], model.predict_proba(X), atol=1e-5)  # ZipMap, class order


def test_schema_of_zipmap_and_label_outputs(spark, zoo_env, tmp_path):
    X, y = load_wine(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(X.astype(np.float32), y)
    path = tmp_path / "wine.onnx"
    path.write_bytes(_onnx(model, X[:1].astype(np.float32)))
    df = spark.createDataFrame([(0, X[0].tolist())], "id int, x array<double>")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": "x"},
                      fetchDict={"label": "output_label", "p": "output_probability"}, argMaxDict={"p": "best"})
    schema = stage.transform(df).schema
    assert schema["label"].dataType.simpleString() == "bigint"
    assert schema["p"].dataType.simpleString() == "array<double>"
    assert stage.transform(df).first()["best"] == model.predict(X[:1].astype(np.float32))[0]


def test_a_text_classifier_takes_strings_and_returns_string_labels(spark, zoo_env, tmp_path):
    from skl2onnx.common.data_types import StringTensorType

    texts, labels = zip(*REVIEWS)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(texts, labels)
    # locale "C": the default en_US.UTF-8 of StringNormalizer is not installed on every machine
    onx = _onnx(model, initial_types=[("text", StringTensorType([None, 1]))],
                options={TfidfVectorizer: {"locale": "C"}})
    queries = [*texts, "a leopard on the ridge at night", "snow and wind only", "ibex on the slope"]
    df = spark.createDataFrame([(i, [t]) for i, t in enumerate(queries)], "id int, text array<string>")
    rows = _score(spark, onx, df, {"text": "text"}, {"label": "output_label", "p": "output_probability"},
                  tmp_path, "text")
    assert [r["label"] for r in rows] == model.predict(queries).tolist()
    np.testing.assert_allclose([r["p"] for r in rows], model.predict_proba(queries), atol=1e-5)
    scalar = spark.createDataFrame([(i, t) for i, t in enumerate(queries)], "id int, text string")
    again = _score(spark, onx, scalar, {"text": "text"}, {"label": "output_label"}, tmp_path, "text2")
    assert [r["label"] for r in again] == [r["label"] for r in rows], "a string column feeds a [N, 1] input too"


def test_a_converted_lightgbm_classifier_gives_the_native_predictions(spark, zoo_env, tmp_path):
    import lightgbm
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    model = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1).fit(X, y)
    onx = convert_lightgbm(model, initial_types=[("X", FloatTensorType([None, X.shape[1]]))], target_opset=15,
                           zipmap=True)
    onx.ir_version = min(onx.ir_version, 10)
    df = spark.createDataFrame([(i, row.tolist()) for i, row in enumerate(X)], "id int, x array<float>")
    label, probabilities = [o.name for o in onx.graph.output]  # "label", "probabilities" (onnxmltools' names)
    rows = _score(spark, onx.SerializeToString(), df, {"X": "x"}, {"label": label, "p": probabilities}, tmp_path, "lgbm")
    assert [r["label"] for r in rows] == model.predict(X).tolist()
    np.testing.assert_allclose([r["p"] for r in rows], model.predict_proba(X), atol=1e-5)


def test_a_converted_xgboost_regressor_scores_scalar_columns_assembled_in_order(spark, zoo_env, tmp_path):
    """The diabetes data as ten scalar columns (as a table holds it); feedDict lists them in the order the
    model was trained on and onnx_model assembles them into its one float tensor."""
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    X, y = data.data.astype(np.float32), data.target
    model = xgboost.XGBRegressor(n_estimators=60, max_depth=4, random_state=0).fit(X, y)
    onx = convert_xgboost(model, initial_types=[("X", FloatTensorType([None, X.shape[1]]))], target_opset=15)
    onx.ir_version = min(onx.ir_version, 10)
    columns = list(data.feature_names)
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(X)],
                               ["id", *columns]).select("id", *reversed(columns))  # table order is not model order
    rows = _score(spark, onx.SerializeToString(), df, {"X": columns}, {"y": onx.graph.output[0].name}, tmp_path, "xgb")
    assert len(rows) == len(X)
    np.testing.assert_allclose([r["y"][0] for r in rows], model.predict(X), rtol=1e-5, atol=1e-5)


def test_a_null_in_an_assembled_column_is_that_rows_error_naming_the_column(spark, zoo_env, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X = X[:, :3].astype(np.float32)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = tmp_path / "three.onnx"
    path.write_bytes(_onnx(model, X[:1]))
    rows = [(i, *map(float, r)) for i, r in enumerate(X[:6])]
    rows[4] = (4, float(X[4, 0]), None, float(X[4, 2]))
    df = spark.createDataFrame(rows, "id int, radius double, texture double, perimeter double")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": ["radius", "texture", "perimeter"]},
                      fetchDict={"label": "output_label"}, handleInvalid="keep", batchSize=4)
    out = sorted(stage.transform(df).collect(), key=lambda r: r["id"])
    assert [r["label"] for r in out[:4] + out[5:]] == model.predict(np.delete(X[:6], 4, axis=0)).tolist()
    assert out[4]["label"] is None
    assert "column 'texture' (feeding model input 'X'): null value in the row" in out[4]["error"]
    with pytest.raises(Exception, match=r"column .texture. \(feeding model input .X.\): null value in row \d+\."):
        stage.copy({stage.handleInvalid: "error"}).transform(df).collect()
    with pytest.raises(Exception, match="input column 'id2' is missing"):
        stage.copy({stage.feedDict: {"X": ["radius", "id2", "perimeter"]}}).transform(df)


def test_text_where_the_model_takes_numbers_is_refused_and_the_cast_it_names_leaves_bad_values_to_their_rows(
        spark, zoo_env, tmp_path):
    """Columns read from CSV without a schema are strings: onnx_model never parses them behind the user's back.
    The error names the cast; after it, a value that is not a number is that row's null, so handleInvalid decides."""
    from pyspark.sql import functions as F

    X, y = load_breast_cancer(return_X_y=True)
    X = X[:, :3].astype(np.float32)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = tmp_path / "three.onnx"
    path.write_bytes(_onnx(model, X[:1]))
    rows = [(i, *(repr(float(v)) for v in r)) for i, r in enumerate(X[:6])]
    rows[2] = (2, rows[2][1], "n/a", rows[2][3])  # what a CSV holds where a measurement is missing
    text = spark.createDataFrame(rows, "id int, radius string, texture string, perimeter string")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": ["radius", "texture", "perimeter"]},
                      fetchDict={"label": "output_label"}, handleInvalid="keep")
    with pytest.raises(zoo.errors.SchemaError, match=r"column 'radius' \(string\) cannot feed model input 'X', which "
                                                     r"takes float32 numbers; cast it first, e\.g\. "
                                                     r'F\.expr\("try_cast\(`radius` AS FLOAT\)"\)'):
        stage.transform(text)
    cast = text.select("id", *(F.expr(f"try_cast(`{c}` AS FLOAT)").alias(c) for c in ("radius", "texture", "perimeter")))
    out = sorted(stage.transform(cast).collect(), key=lambda r: r["id"])
    assert [r["label"] for r in out if r["id"] != 2] == model.predict(np.delete(X[:6], 2, axis=0)).tolist()
    assert out[2]["label"] is None and "column 'texture' (feeding model input 'X'): null value" in out[2]["error"]


def test_numbers_where_the_model_takes_text_are_refused(spark, zoo_env, tmp_path):
    from skl2onnx.common.data_types import StringTensorType

    texts, labels = zip(*REVIEWS)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(texts, labels)
    path = tmp_path / "text.onnx"
    path.write_bytes(_onnx(model, initial_types=[("text", StringTensorType([None, 1]))],
                           options={TfidfVectorizer: {"locale": "C"}}))
    df = spark.createDataFrame([(0, [1.0, 2.0])], "id int, text array<double>")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"text": "text"}, fetchDict={"label": "output_label"})
    with pytest.raises(zoo.errors.SchemaError, match=r"column 'text' \(array<double>\) cannot feed model input 'text', "
                                                     r"which takes strings; cast it first"):
        stage.transform(df)


def test_zipmap_as_a_map_column_keyed_by_class(spark, zoo_env, tmp_path):
    X, y = load_wine(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(X.astype(np.float32), y)
    path = tmp_path / "wine.onnx"
    path.write_bytes(_onnx(model, X[:1].astype(np.float32)))
    df = spark.createDataFrame([(i, X[i].tolist()) for i in (0, 70, 150)], "id int, x array<double>")
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"X": "x"},
                      fetchDict={"p": "output_probability"}, zipMapFormat="map")
    out = stage.transform(df)
    assert out.schema["p"].dataType.simpleString() == "map<bigint,double>"
    got = [r["p"] for r in sorted(out.collect(), key=lambda r: r["id"])]
    expected = model.predict_proba(X[[0, 70, 150]].astype(np.float32))
    for probabilities, want in zip(got, expected):
        assert sorted(probabilities) == [0, 1, 2]
        np.testing.assert_allclose([probabilities[k] for k in (0, 1, 2)], want, atol=1e-5)
    with pytest.raises(Exception, match="zipMapFormat must be one of array, map"):
        stage.copy({stage.zipMapFormat: "dict"}).transform(df)


def test_a_text_model_converted_with_default_options_is_explained_and_runs_with_string_locale(spark, zoo_env, tmp_path):
    """skl2onnx's default conversion asks ONNX Runtime for en_US.UTF-8, missing on many machines (this
    one and CI's: only C, C.utf8, POSIX). On a machine that has it, the test asks for a locale nobody has."""
    import onnx
    from skl2onnx.common.data_types import StringTensorType

    from zoo.errors import InvalidModelError
    from zoo.hub.onnx_files import locale_available, with_locale

    texts, labels = zip(*REVIEWS)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(texts, labels)
    onx = skl2onnx.to_onnx(model, initial_types=[("text", StringTensorType([None, 1]))], target_opset=OPSET)
    onx.ir_version = min(onx.ir_version, 10)
    wanted = "en_US.UTF-8"
    if locale_available(wanted):
        wanted = "zz_ZZ.UTF-8"
        with_locale(onx, wanted)
    path = tmp_path / "default.onnx"
    path.write_bytes(onx.SerializeToString())
    queries = [*texts, "A LEOPARD on the Ridge at NIGHT", "SNOW and Wind ONLY", "Ibex ON THE SLOPE", "ÉCOLE Ünter Leopard"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(queries)], "id int, text string")
    fetch = {"label": "output_label", "p": "output_probability"}
    refused = zoo.stage("onnx_model", modelName=str(path), feedDict={"text": "text"}, fetchDict=fetch)
    with pytest.raises(InvalidModelError) as caught:
        refused.transform(df)
    message = str(caught.value)
    assert f"'StringNormalizer' asks for '{wanted}'" in message and "C.utf8" in message
    assert "locale-gen" in message and "'locale'" in message and "stringLocale=" in message
    stage = zoo.stage("onnx_model", modelName=str(path), feedDict={"text": "text"}, fetchDict=fetch,
                      stringLocale="C.UTF-8", batchSize=5)
    out = stage.transform(df.repartition(3))
    rows = sorted(out.collect(), key=lambda r: r["id"])
    # what the model computes where its locale exists: scikit-learn's own scores (Python lower-cases the text)
    assert [r["label"] for r in rows] == model.predict(queries).tolist()
    np.testing.assert_allclose([r["p"] for r in rows], model.predict_proba(queries), atol=1e-5)
    from zoo.lineage import of

    assert of(out.schema, "p")["string_locale"] == "C.UTF-8"
    assert onnx.load(str(path)).graph.node[0] is not None  # the user's file is not touched
    assert path.read_bytes() == onx.SerializeToString()
    with pytest.raises(InvalidModelError, match="not a locale this machine has"):
        zoo.stage("onnx_model", modelName=str(path), feedDict={"text": "text"}, fetchDict=fetch,
                  stringLocale="qq_QQ.UTF-8").transform(df)
