"""Mutation testing of the conformance kit: defective variants of correct stages, derived automatically.

A kit tuned to hand-written defects gives false confidence; this module measures it against defects
nobody wrote for it. Each *operator* takes a correct stage class and derives a subclass with one
realistic mistake (a session setting read, a statistic of the frame, a param left out of the
writer, the caller's cache dropped, ...), whatever the stage computes: an operator changes the
stage's first output column only under a condition that a correct stage never depends on, so the
mutant is right in the kit's plain run and wrong elsewhere. :func:`score` runs the whole kit on every
mutant and reports which checks killed it, and which survived.

    from zoo.testing.mutants import derive, score
    report = score(spark, ["text_normalize", "vector_assembler"])     # or classes
    print(report.killed, report.total, report.survivors)

``benchmarks/bench_kit.py --mutants`` runs it on the example plugin and the built-ins. Mutant
classes are registered in this module under their own names, so SparkML persistence and
cloudpickle find them as they find any stage class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

_SHARED: list = []  # the one list every instance of a "shared default" mutant holds


@dataclass(frozen=True)
class Mutant:
    """One defective variant: its class, the operator that made it and the check expected to kill it."""

    name: str
    operator: str
    cls: type
    expected: str
    base: str


@dataclass
class MutantResult:
    mutant: Mutant
    killed_by: list[str]
    seconds: float

    @property
    def killed(self) -> bool:
        return bool(self.killed_by)


@dataclass
class MutationReport:
    results: list[MutantResult] = field(default_factory=list)
    not_applicable: list[tuple[str, str, str]] = field(default_factory=list)  # (base, operator, why)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def killed(self) -> int:
        return sum(r.killed for r in self.results)

    @property
    def survivors(self) -> list[Mutant]:
        return [r.mutant for r in self.results if not r.killed]

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "killed": self.killed,
                "kill_rate": round(self.killed / self.total, 4) if self.total else None,
                "mutants": [{"name": r.mutant.name, "operator": r.mutant.operator, "base": r.mutant.base,
                             "expected": r.mutant.expected, "killed_by": r.killed_by, "seconds": round(r.seconds, 2)}
                            for r in self.results],
                "not_applicable": [list(n) for n in self.not_applicable]}


@dataclass(frozen=True)
class _Probe:
    """What an operator needs to know of a base stage: its output column and first input column."""

    out: str  # the first column its output has that its input lacks (else its first output column)
    first_input: str
    example_sets: tuple[str, ...]  # params the first example sets
    shuffle_partitions: str  # the session's value when the mutant was made
    streaming: bool


# -- operators: (name, check expected to kill it, build) --------------------------------------------
def _taint(condition: Callable[[Any, Any], Any]) -> Callable[[type, _Probe], dict]:
    """Make the output column null unless ``condition(self, dataset)`` (a Column) holds: right in the
    kit's plain run, wrong wherever the condition fails."""

    def build(base: type, probe: _Probe) -> dict:
        def _apply(self, dataset):
            from pyspark.sql import functions as F

            out = base._apply(self, dataset)
            target = _output_of(out.columns, dataset.columns)
            typed = out.schema[target].dataType
            return out.withColumn(target, F.when(condition(self, dataset), F.col(f"`{target}`"))
                                  .otherwise(F.lit(None).cast(typed)))

        return {"_apply": _apply}

    return build


def _output_of(columns: list[str], inputs: list[str]) -> str:
    """The column a mutant changes: the first one the stage adds, else its first output column."""
    return next((c for c in columns if c not in inputs), columns[0])


def _utc_midnight(self, dataset):
    from pyspark.sql import functions as F

    return F.date_format(F.timestamp_seconds(F.lit(0)), "HH") == F.lit("00")  # true only in a UTC session


def _session_setting(probe: _Probe):
    def condition(self, dataset):
        from pyspark.sql import functions as F

        return F.lit(dataset.sparkSession.conf.get("spark.sql.shuffle.partitions") == probe.shuffle_partitions)

    return condition


def _frame_has_company(self, dataset):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return F.count(F.lit(1)).over(Window.partitionBy()) > 1


def _rows(transform: Callable[[Any, Any, _Probe], Any]) -> Callable[[type, _Probe], dict]:
    def build(base: type, probe: _Probe) -> dict:
        def _apply(self, dataset):
            return transform(base._apply(self, dataset), dataset, probe)

        return {"_apply": _apply}

    return build


def _drop_nulls(out, dataset, probe):
    from pyspark.sql import functions as F

    return out.where(F.col(f"`{dataset.columns[0]}`").isNotNull())


def _duplicate_nulls(out, dataset, probe):
    from pyspark.sql import functions as F

    return out.unionByName(out.where(F.col(f"`{dataset.columns[0]}`").isNull()))


def _sort(out, dataset, probe):
    from pyspark.sql import functions as F

    return out.orderBy(F.col(f"`{dataset.columns[0]}`").desc_nulls_first())


def _schema_edit(edit: Callable[[Any, _Probe], Any]) -> Callable[[type, _Probe], dict]:
    def build(base: type, probe: _Probe) -> dict:
        def transformSchema(self, schema):  # noqa: N802 - SparkML name
            from pyspark.sql import types as T

            declared = base.transformSchema(self, schema)
            target = _output_of(declared.fieldNames(), schema.fieldNames())
            return T.StructType([edit(f, probe) if f.name == target else f for f in declared.fields])

        return {"transformSchema": transformSchema}

    return build


def _flip_nullable(f, probe):
    from pyspark.sql import types as T

    return T.StructField(f.name, f.dataType, not f.nullable, f.metadata)


def _claim_binary(f, probe):
    from pyspark.sql import types as T

    return T.StructField(f.name, T.BinaryType() if not isinstance(f.dataType, T.BinaryType) else T.StringType(),
                         f.nullable, f.metadata)


def _overwrites(base: type, probe: _Probe) -> dict:
    def transformSchema(self, schema):  # noqa: N802
        from pyspark.sql import types as T

        target = self.getOrDefault("outputCol") if self.hasParam("outputCol") else probe.out
        return base.transformSchema(self, T.StructType([f for f in schema.fields if f.name != target]))

    return {"transformSchema": transformSchema}


def _loses_param(base: type, probe: _Probe) -> dict:
    def write(self):
        from pyspark.ml.util import DefaultParamsWriter

        class Forgetful(DefaultParamsWriter):
            def saveImpl(inner, path):  # noqa: N805 - the writer's own self
                kept = {p.name: v for p, v in inner.instance._paramMap.items() if p.name != probe.example_sets[0]}
                DefaultParamsWriter.saveMetadata(inner.instance, path, inner.sparkSession, paramMap=kept)

        return Forgetful(self)

    return {"write": write}


def _shared_default(base: type, probe: _Probe) -> dict:
    from pyspark.ml.param import Param, Params, TypeConverters

    original_init = base.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._setDefault(zooNotes=_SHARED)

    return {"zooNotes": Param(Params._dummy(), "zooNotes", "notes kept while transforming", TypeConverters.toList),
            "__init__": __init__, "getZooNotes": lambda self: self.getOrDefault("zooNotes"),
            "setZooNotes": lambda self, v: self._set(zooNotes=v)}


def _mutates_param(base: type, probe: _Probe) -> dict:
    def _apply(self, dataset):
        out = base._apply(self, dataset)
        p = next(p for p in self.params if self.isDefined(p) and p.name in probe.example_sets)
        value = self.getOrDefault(p)
        changed = (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
                   else value + "_" if isinstance(value, str) else [*value, value[0]] if isinstance(value, list) and value
                   else {**value, "zoo_mutant": "x"} if isinstance(value, dict) else None)
        if changed is not None:
            self._set(**{p.name: changed})
        return out

    return {"_apply": _apply}


def _unpersists(base: type, probe: _Probe) -> dict:
    def _apply(self, dataset):
        dataset.unpersist()
        return base._apply(self, dataset)

    return {"_apply": _apply}


def _plain_state(base: type, probe: _Probe) -> dict:
    examples = base.zoo_examples.__func__

    def zoo_examples(cls, spark):
        found = examples(cls, spark)
        for e in found:
            e.stage._zoo_state = "learned"  # a plain attribute: save() never writes it
        return found

    build = _taint(lambda self, dataset: __import__("pyspark.sql.functions", fromlist=["lit"]).lit(
        getattr(self, "_zoo_state", None) == "learned"))(base, probe)
    return {**build, "zoo_examples": classmethod(zoo_examples)}


def _streaming_differs(self, dataset):
    from pyspark.sql import functions as F

    return F.lit(not dataset.isStreaming)


def _partition_zero(self, dataset):
    from pyspark.sql import functions as F

    return F.spark_partition_id() == 0


def _early_position(self, dataset):
    from pyspark.sql import functions as F

    return F.monotonically_increasing_id() < 3


def _mostly(self, dataset):
    from pyspark.sql import functions as F

    return F.rand(seed=11) < 0.75


# estimator operators: they change fit itself
def _fit_crashes_when_empty(base: type, probe: _Probe) -> dict:
    def _fit_validated(self, dataset):
        first = dataset.take(1)[0]  # IndexError on an empty frame: the mistake
        del first
        return base._fit_validated(self, dataset)

    return {"_fit_validated": _fit_validated}


def _fit_unpersists(base: type, probe: _Probe) -> dict:
    def _fit_validated(self, dataset):
        dataset.persist()
        model = base._fit_validated(self, dataset)
        dataset.unpersist()
        return model

    return {"_fit_validated": _fit_validated}


def _fit_on_a_sample(base: type, probe: _Probe) -> dict:
    def _fit_validated(self, dataset):
        return base._fit_validated(self, dataset.sample(0.6))

    return {"_fit_validated": _fit_validated}


def _model_without_params(base: type, probe: _Probe) -> dict:
    def _fit_validated(self, dataset):
        model = base._fit_validated(self, dataset)
        for name in probe.example_sets:  # the model keeps its defaults: the estimator's Params not copied
            if model.hasParam(name):
                model.clear(model.getParam(name))
        return model

    return {"_fit_validated": _fit_validated}


TRANSFORM_OPERATORS: dict[str, tuple[str, Callable[[type, _Probe], dict]]] = {
    "reads_the_session_time_zone": ("environment", _taint(_utc_midnight)),
    "reads_a_session_setting": ("environment", None),  # built per probe (below)
    "depends_on_the_partition": ("partitioning", _taint(_partition_zero)),
    "depends_on_row_position": ("partitioning", _taint(_early_position)),
    "uses_a_frame_statistic": ("independence", _taint(_frame_has_company)),
    "random_noise": ("partitioning", _taint(_mostly)),
    "drops_rows_with_nulls": ("fuzz", _rows(_drop_nulls)),
    "duplicates_rows_with_nulls": ("fuzz", _rows(_duplicate_nulls)),
    "sorts_its_output": ("rows", _rows(_sort)),
    "lies_about_nullability": ("schema", _schema_edit(_flip_nullable)),
    "lies_about_a_type": ("schema", _schema_edit(_claim_binary)),
    "overwrites_an_existing_column": ("collision", _overwrites),
    "loses_a_param_on_save": ("persistence", _loses_param),
    "shares_a_mutable_default": ("defaults", _shared_default),
    "changes_its_params": ("unchanged", _mutates_param),
    "unpersists_its_input": ("side_effects", _unpersists),
    "keeps_state_in_a_plain_attribute": ("persistence", _plain_state),
    "streams_differently": ("streaming", _taint(_streaming_differs)),
}
FIT_OPERATORS: dict[str, tuple[str, Callable[[type, _Probe], dict]]] = {
    "fit_crashes_on_an_empty_frame": ("fit_hostile", _fit_crashes_when_empty),
    "fit_unpersists_its_input": ("side_effects", _fit_unpersists),
    "fit_on_a_random_sample": ("estimator", _fit_on_a_sample),
    "model_built_without_the_params": ("schema", _model_without_params),
}


def _register(name: str, base: type, namespace: dict) -> type:
    """A subclass of ``base`` made importable as ``zoo.testing.mutants.<name>`` (persistence and
    cloudpickle find classes by module and name)."""
    cls = type(name, (base,), {"__module__": __name__, "__qualname__": name, "__doc__": base.__doc__, **namespace})
    globals()[name] = cls
    return cls


def _probe(base: type, spark) -> _Probe:
    example = base.zoo_examples(spark)[0]
    stage, df = example.stage, example.transform_df
    declared = stage.transformSchema(df.schema)
    new = [f.name for f in declared.fields if f.name not in df.columns]
    sets = tuple(p.name for p in stage.params if stage.isSet(p))
    return _Probe(new[0] if new else declared.fields[0].name, df.columns[0], sets,
                  spark.conf.get("spark.sql.shuffle.partitions", "200"), bool(getattr(base, "zoo_streaming", False)))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def derive(base: type, spark, *, operators: list[str] | None = None,
           skipped: list[tuple[str, str, str]] | None = None) -> list[Mutant]:
    """Every applicable mutant of the correct stage class ``base`` (a Transformer, or an Estimator
    whose fitted model is mutated with the Transformer operators and whose fit with its own)."""
    from pyspark.ml import Estimator

    probe = _probe(base, spark)
    label = getattr(base, "zoo_name", "") or base.__name__
    out: list[Mutant] = []
    estimator = issubclass(base, Estimator)
    model_base = None
    if estimator:
        example = base.zoo_examples(spark)[0]
        fitted = example.stage.fit(example.fit_df if example.fit_df is not None else example.transform_df)
        model_base = type(fitted)
        mprobe = dataclasses.replace(probe, example_sets=tuple(p.name for p in fitted.params if fitted.isSet(p)))

    def skip(op: str, why: str) -> None:
        if skipped is not None:
            skipped.append((label, op, why))

    for op, (expected, build) in TRANSFORM_OPERATORS.items():
        if operators is not None and op not in operators:
            continue
        if op == "reads_a_session_setting":
            build = _taint(lambda self, dataset, p=probe: _session_setting(p)(self, dataset))
        if op == "streams_differently" and not probe.streaming:
            skip(op, "the stage does not claim streaming")
            continue
        if op in ("loses_a_param_on_save", "changes_its_params") and not (mprobe if estimator else probe).example_sets:
            skip(op, "its example sets no param")
            continue
        name = f"Mutant_{_safe(label)}__{op}"
        if not estimator:
            cls = _register(name, base, {**build(base, probe), "zoo_name": f"{label}~{op}"})
        else:
            if op == "keeps_state_in_a_plain_attribute":
                skip(op, "an estimator's examples hold the estimator, not the model that transforms")
                continue
            if op in ("shares_a_mutable_default", "loses_a_param_on_save"):
                cls = _register(name, base, {**build(base, probe), "zoo_name": f"{label}~{op}"})  # on the estimator
            else:
                model_cls = _register(name + "_model", model_base, {**build(model_base, mprobe),
                                                                    "zoo_name": f"{label}~{op}_model"})
                cls = _register(name, base, {"_fit_validated": _swapping_fit(base, model_cls),
                                             "zoo_name": f"{label}~{op}"})
        out.append(Mutant(name, op, cls, expected, label))
    if estimator:
        for op, (expected, build) in FIT_OPERATORS.items():
            if operators is not None and op not in operators:
                continue
            if op == "model_built_without_the_params" and not mprobe.example_sets:
                skip(op, "its model has no param set by the estimator")
                continue
            name = f"Mutant_{_safe(label)}__{op}"
            out.append(Mutant(name, op, _register(name, base, {**build(base, mprobe), "zoo_name": f"{label}~{op}"}),
                              expected, label))
    return out


def _swapping_fit(base: type, model_cls: type):
    def _fit_validated(self, dataset):
        model = base._fit_validated(self, dataset)
        model.__class__ = model_cls  # the same model, with the mutated transform
        return model

    return _fit_validated


def _resolve(base: str | type) -> type:
    if isinstance(base, type):
        return base
    from zoo.plugins.stage_registry import canonical_name, registered

    found = registered()
    return found[canonical_name(base, found)].cls


def score(spark, bases: list[str | type], *, operators: list[str] | None = None, fuzz_examples: int = 6,
          checks: list[str] | None = None,
          on_result: Callable[[MutantResult], None] | None = None) -> MutationReport:
    """Derive the mutants of each base and run the kit on each (every check, or ``checks``): which
    checks kill it."""
    import time

    from zoo.testing import CHECKS, run_checks

    report = MutationReport()
    for base in bases:
        for mutant in derive(_resolve(base), spark, operators=operators, skipped=report.not_applicable):
            started = time.perf_counter()
            failed = [r.check for r in run_checks(mutant.cls, spark, checks=checks or CHECKS, fuzz_examples=fuzz_examples)
                      if not r.ok]
            result = MutantResult(mutant, sorted(set(failed)), time.perf_counter() - started)
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    return report
