"""A copy of a text model with the locale of its StringNormalizer nodes rewritten, made only when asked.

A scikit-learn text pipeline converted by skl2onnx with default options normalises strings in
``en_US.UTF-8`` (ONNX Runtime's default when the node names none), a locale that many container
images and Spark clusters lack: ONNX Runtime then refuses to load the model at all. sparkzoo says so
before Spark runs a task (:func:`zoo.hub.onnx_files.locale_problem`), and with ``onnx_model``'s
``stringLocale`` (e.g. ``"C.UTF-8"``) runs a copy whose nodes name that locale instead.

It never does this on its own: lower-casing is the only thing the locale changes in these nodes,
and for most text it is the same in any UTF-8 locale, but not for all (Turkish dotted and dotless
i, for one), so the choice stays the user's, visible in the stage's Params and the provenance
record. The copy is a derived file (:mod:`zoo.hub.derived`): a blob named by its sha256, stamped
and recorded by the hash of (source sha256, locale), built again on an executor that lacks it.
"""

from __future__ import annotations

from pathlib import Path

from zoo.errors import InvalidModelError
from zoo.hub import derived
from zoo.hub.cache import ModelCache
BUILDER = 1


def derivation(source_sha: str, locale: str, label: str = "") -> derived.Derivation:
    return derived.Derivation("locale", {"source": source_sha, "locale": locale, "builder": BUILDER}, label)


def build(path: Path, d: derived.Derivation) -> bytes:
    """The model at ``path`` with every StringNormalizer's locale set to ``d``'s, stamped."""
    import onnx

    from zoo.hub.onnx_files import locale_available, with_locale

    locale = d.inputs["locale"]
    if locale_available(locale) is False:
        raise InvalidModelError(f"model {d.label or path}: stringLocale {locale!r} is not a locale this machine has "
                                "either; `locale -a` lists those it has (C.UTF-8 is on almost every Linux)")
    model = onnx.load(str(path), load_external_data=False)
    if not with_locale(model, locale):
        raise InvalidModelError(f"model {d.label or path} has no StringNormalizer node: stringLocale {locale!r} has "
                                "nothing to change; leave it empty")
    model.metadata_props.add(key=derived.STAMP_KEY, value=d.key)
    return model.SerializeToString()


def copy(cache: ModelCache, source_sha: str, path: Path, locale: str, label: str = "") -> tuple[str, Path | bytes]:
    """(sha256, file or bytes) of the copy of model ``source_sha`` (at ``path``) that runs in ``locale``."""
    d = derivation(source_sha, locale, label)
    return derived.blob(cache, d, lambda: build(path, d))


def verify(cache: ModelCache, record: derived.Record, source: Path) -> tuple[str, str | None]:
    """(status, reason) of a recorded copy: it must be what the rewrite makes of ``source`` now."""
    return derived.verify_blob(cache, record, lambda: build(source, record.derivation))
