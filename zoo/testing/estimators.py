"""The `estimator` check: fitting twice on the same data gives the same model (else the checks that
compare two fits say nothing, and are told so)."""

from __future__ import annotations

from zoo.testing.compare import _Fail, _fit_df, _row_diff, rows


def check_estimator(kit) -> None:
    if not kit._is_estimator():
        return
    from pyspark.ml import Model

    for example in kit.examples:
        fit_df = _fit_df(example)
        first, second = kit._model(example.stage, example), example.stage.fit(fit_df)
        if not isinstance(first, Model):
            raise _Fail(f"fit returned {type(first).__name__}, not a pyspark.ml.Model")
        a, b = rows(first.transform(example.transform_df)), rows(second.transform(example.transform_df))
        if a != b:
            kit.unrepeatable = True
            raise _Fail(f"fitting twice on the same data gives different models ({_row_diff(a, b)}); the "
                        "persistence and pickle checks skip comparing separate fits for this stage")
