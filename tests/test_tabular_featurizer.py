"""tabular_featurizer: mixed columns to one vector, with a report; end to end on a real public data set.

The real data: the "cars" table bundled with the vega_datasets package (406 cars from the 1970s and
1980s, StatLib's Auto MPG data: a name, numbers with missing values, a model year, an origin), so
no network is needed. A SparkML LogisticRegression learns whether a car is American from the
features tabular_featurizer builds from every other column.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import functions as F

import zoo
from zoo.errors import SchemaError, StageError
from zoo.stages.tabular_featurizer import TabularFeaturizer


@pytest.fixture(scope="module")
def cars(spark):
    from vega_datasets import data

    pdf = data.cars()
    df = spark.createDataFrame(pdf).withColumn("label", (F.col("Origin") == "USA").cast("double"))
    return df.withColumn("id", F.monotonically_increasing_id()).cache()


@pytest.mark.slow
def test_real_data_end_to_end_with_a_sparkml_learner(cars, tmp_path):
    train, test = cars.randomSplit([0.7, 0.3], seed=7)
    pipeline = Pipeline(stages=[zoo.stage("tabular_featurizer", excludeCols=["Origin", "label", "id"]),
                                LogisticRegression(maxIter=50, regParam=0.01)])
    fitted = pipeline.fit(train)
    scored = fitted.transform(test)
    assert scored.count() == test.count(), "no row may be dropped (missing values are imputed)"
    auc = BinaryClassificationEvaluator().evaluate(scored)
    assert auc >= 0.9, f"AUC {auc:.3f}"

    report = {e["column"]: e for e in fitted.stages[0].report()}
    assert list(report) == ["Name", "Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower", "Weight_in_lbs",
                            "Acceleration", "Year"]
    assert report["Year"]["type"] == "timestamp" and report["Year"]["width"] == 5
    assert report["Horsepower"]["treatment"] == "number, imputed"
    train_hp = [r[0] for r in train.select("Horsepower").collect() if r[0] is not None and not math.isnan(r[0])]
    assert report["Horsepower"]["fill"] == pytest.approx(sum(train_hp) / len(train_hp))
    assert report["Name"]["type"] == "string" and report["Name"]["distinct"] > 32
    # car names are short phrases ("chevrolet chevelle malibu", 2.6 words on average) whose words recur
    assert report["Name"]["treatment"].startswith("text") and report["Name"]["mean_words"] > 2
    assert scored.first()["features"].size == sum(e["width"] for e in report.values()) == 4096 + 6 + 5
    assert "Horsepower" in fitted.stages[0].summary()

    fitted.write().save(str(tmp_path / "model"))
    again = PipelineModel.load(str(tmp_path / "model")).transform(test)
    assert [r["probability"] for r in again.orderBy("id").collect()] == \
        [r["probability"] for r in scored.orderBy("id").collect()]
    assert again.first() is not None and PipelineModel.load(str(tmp_path / "model")).stages[0].report() == \
        fitted.stages[0].report()


def test_each_type_is_handled_as_documented(spark):
    [_, example] = TabularFeaturizer.zoo_examples(spark)
    df = example.transform_df
    model = example.stage.fit(df)
    plan = {e["column"]: e for e in model.report()}
    assert {c: e["treatment"].split(":")[0].split(" (")[0] for c, e in plan.items()} == {
        "age": "number, imputed", "member": "number, imputed", "city": "categorical", "comment": "text",
        "code": "hashed category", "joined": "date parts", "embedding": "appended as is", "scores": "appended as is"}
    ages = [a for a in (r["age"] for r in df.collect()) if a is not None and not math.isnan(a)]
    assert plan["age"]["fill"] == pytest.approx(sum(ages) / len(ages))
    assert plan["city"]["width"] == 4 and plan["city"]["categories"][0] in ("Oslo", "Lima", "Pune")

    new = spark.createDataFrame(
        [(99, float("nan"), None, "Quito", None, "Z999", dt.datetime(2025, 3, 9, 17, 0), df.first()["embedding"],
          [1.0, 2.0], 0)], df.schema)
    [vec] = [r["features"].toArray().tolist() for r in model.transform(new).collect()]
    assert vec[0] == pytest.approx(plan["age"]["fill"])  # NaN imputed
    assert vec[1] == pytest.approx(plan["member"]["fill"])  # null boolean imputed with the share of true
    assert vec[2:6] == [0.0, 0.0, 0.0, 1.0]  # unseen city -> the extra slot
    start = 2 + 4 + 32 + 16
    assert vec[start:start + 5] == [2025.0, 3.0, 9.0, 1.0, 17.0]  # year, month, day, weekday (Sunday=1), hour
    assert vec[-2:] == [1.0, 2.0]


def test_bad_columns_and_settings_are_named(spark):
    df = spark.createDataFrame([(1, {"a": 1}, "x")], "id int, tags map<string,int>, name string")
    with pytest.raises(SchemaError, match="input column 'tags' has type map<string,int>"):
        zoo.stage("tabular_featurizer", inputCols=["id", "tags"]).fit(df)
    model = zoo.stage("tabular_featurizer").fit(df)  # unnamed unsupported columns are skipped, and the report says what was used
    assert [e["column"] for e in model.report()] == ["id", "name"]
    with pytest.raises(SchemaError, match="no usable column"):
        zoo.stage("tabular_featurizer", excludeCols=["id", "name"]).fit(df)
    with pytest.raises(StageError, match="imputeStrategy must be mean or median"):
        zoo.stage("tabular_featurizer", imputeStrategy="mode").fit(df)
    with pytest.raises(SchemaError, match="input column 'name' has type int; expected a string column, as in fit"):
        model.transform(df.withColumn("name", F.lit(3)))
