"""The plugin's own tests: the conformance kit in three lines, plus what the stage does."""

import zoo
from zoo.testing import assert_conforms


def test_text_normalize_conforms(zoo_spark):
    assert_conforms("text_normalize", zoo_spark)


def test_text_normalize_output(zoo_spark):
    df = zoo_spark.createDataFrame([("  Snow   LEOPARD\tspotted ",)], "text string")
    out = zoo.stage("text_normalize").transform(df).collect()
    assert out[0].text_normalized == "snow leopard spotted"
