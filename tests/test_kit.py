"""The conformance kit: every built-in stage passes it, and it catches real defects."""

from __future__ import annotations

import pytest

import zoo
from zoo.testing import CHECKS, assert_conforms, check_stage

import broken_stages as broken


# sparkzoo's own stages and any other plugin installed here, except the example plugin: its own tests
# (examples/zoo-plugin-example/tests, part of this suite) run the kit on it, as a plugin author's do
PLUGIN_EXAMPLE = "zoo-plugin-example"


@pytest.mark.slow
@pytest.mark.timeout(600)  # a hang guard: the dearest stage (tabular_featurizer) takes ~50 s in the suite
@pytest.mark.parametrize("name", [s.name for s in zoo.stages() if s.distribution != PLUGIN_EXAMPLE])
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
        (broken.CrashesOnNull, "fuzz", "crashed with TypeError"),
        (broken.DropsNulls, "fuzz", "1 input rows gave 0 output rows"),
        (broken.DuplicatesRows, "rows", "6 input rows gave 12 output rows"),
        (broken.Reorders, "rows", "another order"),
        (broken.SharesMutableDefault, "defaults", "param 'seen': two fresh instances share one list"),
        (broken.SharesMutableDefault, "unchanged", "seen: [] -> [1.0]"),
        (broken.NeedsAnArgument, "construct", "NeedsAnArgument() fails"),
        (broken.ForgetsItsOffset, "persistence", "attribute(s) 'offset' set on the instance are not Params"),
        (broken.NullabilityLies, "schema", "y (nullable False vs True)"),
        # the second set: defect classes caught by properties of every correct stage
        (broken.SessionDay, "environment", "spark.sql.session.timeZone=Pacific/Kiritimati"),
        (broken.LocaleLabel, "environment", "JVM default locale=tr-TR"),
        (broken.ModelWritesAnotherColumn, "schema", "the estimator's transformSchema says"),
        (broken.FrameMinMax, "independence", "depends on the other rows of the frame"),
        (broken.FitIndexesFirstRow, "fit_hostile", "fit on an empty frame crashed with IndexError"),
        (broken.OverwritesOutput, "collision", "silently replaces the caller's column"),
        (broken.AcceptsAnyNumber, "types", "type decimal(10,2), but transform then crashes with TypeError"),
        (broken.UnpersistsItsInput, "side_effects", "fit changed the caller's DataFrame: its cache"),
    ],
)
def test_the_kit_reports_each_defect(spark, cls, check, words):
    failures = check_stage(cls, spark, checks=[check])
    assert [f.check for f in failures] == [check], failures
    assert words in failures[0].message and failures[0].stage == cls.zoo_name
    assert str(failures[0]).startswith(f"[{cls.zoo_name}] {check}: ")


def test_assert_conforms_raises_with_the_failures_check_stage_finds(spark):
    # what a plugin's own test sees; once here, not per defect (a fuzz defect would shrink twice)
    for cls, checks in ((broken.LyingSchema, ["meta", "schema"]), (broken.NullabilityLies, ["defaults", "schema"])):
        failures = check_stage(cls, spark, checks=checks)
        assert [f.check for f in failures] == ["schema"], failures
        with pytest.raises(AssertionError) as raised:
            assert_conforms(cls, spark, checks=checks)
        assert str(raised.value) == f"conformance failures:\n  {failures[0]}"


def test_a_declared_row_filter_passes_the_row_checks(spark):
    assert check_stage(broken.DeclaredFilter, spark, checks=["rows", "fuzz"], fuzz_examples=4) == []


def test_an_unrepeatable_fit_is_reported_once(spark):
    failures = check_stage(broken.RandomFit, spark, checks=["estimator", "persistence", "pickle"])
    assert [f.check for f in failures] == ["estimator"], failures


def test_the_partitioning_check_shows_the_rows_that_differ(spark):
    (failure,) = check_stage(broken.DependsOnRowOrder, spark, checks=["partitioning"])
    assert "expected row(s) missing, e.g." in failure.message and "unexpected row(s)" in failure.message


def test_fuzzing_shows_the_smallest_crashing_input(spark):
    (failure,) = check_stage(broken.CrashesOnNull, spark, checks=["fuzz"], fuzz_examples=10)
    assert "smallest input found: rows=[(None,)]" in failure.message, failure.message


def test_a_crash_on_an_empty_partition_is_named_in_the_report(spark):
    (failure,) = check_stage(broken.CrashesOnEmptyPartition, spark, checks=["schema"])
    assert "StopIteration" in failure.message or "RuntimeError" in failure.message, failure.message


@pytest.mark.slow
def test_fuzzing_reports_a_minimal_reproducing_input(spark):
    failures = check_stage(broken.DependsOnRowOrder, spark, checks=["fuzz"], fuzz_examples=4)
    (failure,) = failures
    assert failure.check == "fuzz" and "smallest input found: rows=[" in failure.message


def test_unknown_check_names_are_refused(spark):
    with pytest.raises(ValueError, match="unknown check 'speed'"):
        check_stage(broken._Scale, spark, checks=["speed"])
    assert "persistence" in CHECKS


def test_a_nan_default_is_equal_to_itself_in_every_check(spark):
    checks = ["defaults", "params", "copy", "unchanged", "persistence", "pickle"]
    assert check_stage(broken.NaNDefault, spark, checks=checks) == []


def test_a_jvm_error_is_reported_by_its_own_words(spark):
    (failure,) = check_stage(broken.DividesByZero, spark, checks=["rows"])
    assert "DIVIDE_BY_ZERO" in failure.message and "An error occurred while calling" not in failure.message


def test_fuzz_shrinking_is_bounded_and_still_reports_a_failing_input(spark, monkeypatch):
    import zoo.testing.kit

    monkeypatch.setattr(zoo.testing.kit, "SHRINK_SECONDS", 0.0)  # report the first failing input found
    (failure,) = check_stage(broken.CrashesOnNull, spark, checks=["fuzz"], fuzz_examples=10)
    assert "crashed with TypeError" in failure.message and "smallest input found: rows=[" in failure.message


def test_the_correct_bases_pass_the_property_checks(spark):
    checks = ["environment", "independence", "fit_hostile", "collision", "types", "side_effects"]
    assert check_stage(broken._Scale, spark, checks=checks) == []
    assert check_stage(broken.MeanCenter, spark, checks=checks) == []
    assert check_stage(broken.DeclaredFilter, spark, checks=checks) == []


def test_mutants_derived_from_a_correct_stage_are_killed_by_the_checks_for_their_class(spark):
    """The mutation harness end to end on three operators (the full score is benchmarks/bench_mutants.py)."""
    from zoo.testing.mutants import score

    ops = ["uses_a_frame_statistic", "unpersists_its_input", "depends_on_the_partition"]
    checks = ["meta", "independence", "side_effects", "partitioning"]  # what these three need: the suite's budget
    report = score(spark, ["text_normalize"], operators=ops, checks=checks)
    assert sorted(r.mutant.operator for r in report.results) == sorted(ops)
    for r in report.results:
        assert r.mutant.expected in r.killed_by, (r.mutant.name, r.killed_by)
    assert report.to_dict()["kill_rate"] == 1.0
