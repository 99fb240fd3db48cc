"""Provenance of feature columns: which model bytes, cut, preprocessing and software made them.

image_featurizer, image_classifier, onnx_model and text_embedder write a record into their output
columns' Spark metadata (under :data:`KEY`): it travels with the DataFrame's schema, so it survives
parquet (Spark keeps the schema, metadata included, in every file's footer) and SparkML save/load
(the stages write it again on every transform). ``zoo.provenance(df, "features")`` reads it;
stages that combine feature columns compare it (:func:`conflict`) and refuse to mix columns made
by different models, cuts or preprocessing unless told to. A union keeps only its first branch's
metadata, so rows of different models can share one column: :func:`mixed` finds them in the plan.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY = "sparkzoo"
# what makes two columns comparable; the rest (versions, device) is recorded but may differ
IDENTITY = ("model_sha256", "external_data_sha256", "cut", "output", "preprocess_sha256", "resampler")


def canonical_hash(value: Any) -> str | None:
    """sha256 of ``value`` as canonical JSON (sorted keys, no spaces); None for None."""
    if value is None:
        return None
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def record(stage: str, spec: Any, *, width: int | None, output: str | None = None, device: str = "cpu",
           **settings: Any) -> dict[str, Any]:
    """The provenance of a column a model stage makes from ``spec`` (a :class:`zoo.runtime.models.ModelSpec`);
    ``width``: values per row when known (None for outputs whose size varies)."""
    import onnxruntime

    from zoo.runtime.imaging import RESAMPLER
    from zoo.version import __version__

    cut = spec.cut
    return {
        "stage": stage,
        "model": spec.label,
        "model_sha256": spec.source_sha256,
        "runnable_sha256": spec.sha256,
        # a multi-file model's weights are not in its graph file: two checkpoints can share one graph
        **({"external_data_sha256": spec.weights_sha256} if getattr(spec, "parts", ()) else {}),
        **({"string_locale": spec.locale} if getattr(spec, "locale", None) else {}),  # a rewritten text model
        "cut": 0 if cut is None else cut.index,
        "output": output or spec.output,
        "preprocess": spec.preprocess,
        "preprocess_sha256": canonical_hash(spec.preprocess),
        # the same preprocess settings resampled by another algorithm are other pixels
        **({"resampler": RESAMPLER} if spec.preprocess is not None else {}),
        "width": width,
        "device": device,
        "sparkzoo": __version__,
        "onnxruntime": onnxruntime.__version__,
        **settings,
    }


def of(schema_or_df: Any, column: str) -> dict[str, Any] | None:
    """The provenance record of ``column`` (a DataFrame or a StructType), or None when it has none."""
    schema = getattr(schema_or_df, "schema", schema_or_df)
    if column not in schema.fieldNames():
        from zoo.errors import SchemaError

        raise SchemaError(f"no column {column!r}; columns: {', '.join(schema.fieldNames())}")
    found = schema[column].metadata.get(KEY)
    return dict(found) if found else None


def provenance(df: Any, column: str) -> dict[str, Any]:
    """``zoo.provenance(df, "features")``: how the column was made (an empty dict when sparkzoo did
    not make it): model sha256, cut, output tensor, preprocessing and its hash, width, device,
    sparkzoo and ONNX Runtime versions, fastDecode."""
    return of(df, column) or {}


def attach(df: Any, column: str, made: dict[str, Any]) -> Any:
    """``df`` with ``made`` as ``column``'s provenance (other metadata of the column kept)."""
    return df.withMetadata(column, {**df.schema[column].metadata, KEY: made})


def conflict(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """How two provenance records differ in what makes features comparable, in words; None if they agree."""
    different = [k for k in IDENTITY if a.get(k) != b.get(k)]
    if not different:
        return None
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in different)


def branches(df: Any, column: str) -> list[dict[str, Any]]:
    """The provenance records of every union branch whose rows reach ``column`` of ``df``.

    Spark gives a union's output the metadata of its first branch only: features of model A unioned
    with features of model B read as A's. The analysed plan still knows each branch's attributes, so
    this follows the column's attribute (by expression id, through the operators that pass it on:
    select, filter, join, other unions) into every union and reads each branch's metadata. A column
    rebuilt on the way (an alias, a UDF) starts a new attribute and is not followed further. Under
    Spark Connect the plan is not reachable from Python: the result is empty."""
    jdf = getattr(df, "_jdf", None)
    if jdf is None or column not in df.columns:
        return []
    plan = jdf.queryExecution().analyzed()
    follow = {plan.output().apply(df.columns.index(column)).exprId().id()}
    found: list[dict[str, Any]] = []
    pending = [plan]
    while pending:
        node = pending.pop()
        children = node.children()
        kids = [children.apply(i) for i in range(children.size())]
        if node.getClass().getSimpleName() == "Union":
            output = node.output()
            for i in range(output.size()):
                if output.apply(i).exprId().id() not in follow:
                    continue
                for kid in kids:
                    attr = kid.output().apply(i)
                    follow.add(attr.exprId().id())
                    made = json.loads(attr.metadata().json()).get(KEY)
                    if made:
                        found.append(made)
        pending.extend(kids)
    return found


def mixed(df: Any, column: str) -> str | None:
    """How the union branches feeding ``column`` were made differently, in words; None when they agree (or
    sparkzoo made at most one kind of them)."""
    made = [m for m in branches(df, column) if "model_sha256" in m]
    for other in made[1:]:
        why = conflict(made[0], other)
        if why:
            return why
    return None
