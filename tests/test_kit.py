"""The conformance kit: every built-in stage passes it, and it catches real defects."""

from __future__ import annotations

import pytest

import zoo
from zoo.testing import CHECKS, assert_conforms, check_stage

import broken_stages as broken


@pytest.mark.parametrize("name", [s.name for s in zoo.stages()])
def test_every_registered_stage_conforms(spark, name):
    assert_conforms(name, spark)


def test_the_correct_base_of_the_broken_stages_passes(spark):
    assert check_stage(broken._Scale, spark) == []


def test_a_correct_estimator_passes_every_check(spark):
    assert check_stage(broken.MeanCenter, spark) == []


@pytest.mark.parametrize(
    "cls, check, words",
    [
        (broken.LosesParamOnSave, "persistence", "param 'factor' set=True before save, set=False after load"),
        (broken.DependsOnRowOrder, "partitioning", "differs"),
        (broken.LyingSchema, "schema", "transformSchema says"),
        (broken.CrashesOnEmptyPartition, "partitioning", "16 partitions, some empty"),
        (broken.NoExamples, "meta", "returned no examples"),
        (broken.LazyValidation, "bad_input", "instead of zoo.errors.SchemaError"),
        (broken.RandomFit, "estimator", "fitting twice on the same data gives different models"),
        (broken.ClaimsStreamingButSorts, "streaming", "cannot transform a streaming DataFrame"),
        (broken.StreamsDifferently, "streaming", "a stream of the example gives different rows than the batch"),
    ],
)
def test_the_kit_reports_each_defect(spark, cls, check, words):
    failures = check_stage(cls, spark, checks=[check])
    assert [f.check for f in failures] == [check], failures
    assert words in failures[0].message and failures[0].stage == cls.zoo_name
    with pytest.raises(AssertionError, match=f"\\[{cls.zoo_name}\\] {check}"):
        assert_conforms(cls, spark, checks=[check])


def test_a_crash_on_an_empty_partition_is_named_in_the_report(spark):
    (failure,) = check_stage(broken.CrashesOnEmptyPartition, spark, checks=["schema"])
    assert "StopIteration" in failure.message or "RuntimeError" in failure.message, failure.message


def test_fuzzing_reports_a_minimal_reproducing_input(spark):
    failures = check_stage(broken.DependsOnRowOrder, spark, checks=["fuzz"], fuzz_examples=4)
    (failure,) = failures
    assert failure.check == "fuzz" and "minimal input rows=[" in failure.message


def test_unknown_check_names_are_refused(spark):
    with pytest.raises(ValueError, match="unknown check 'speed'"):
        check_stage(broken._Scale, spark, checks=["speed"])
    assert "persistence" in CHECKS
