"""``text_featurizer``: free text to a TF-IDF vector in one estimator (the paper's TextFeaturizer).

Tokenise (a regular expression of separators, lower-casing, a minimum token length), optionally
remove stop words, add n-grams of the chosen lengths, hash the terms into ``numFeatures`` buckets
(term frequencies, or presence with ``binary``), and optionally weight by inverse document
frequency learnt in ``fit``. Each step is one of Spark's own ``pyspark.ml.feature`` stages,
configured together, so the output equals the hand-built SparkML pipeline exactly
(``benchmarks/bench_text.py`` checks that and times both) and runs on Spark Connect too.

A null text is an empty document (an all-zero vector), not an error: a missing review or
description is data, and dropping the row would lose its other columns.
"""

from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from zoo.stages.base import StageExample, ZooEstimator, ZooModel
from zoo.stages.params import param
from zoo.stages.persistence import HasInnerModel

from zoo.errors import StageError

_LANGUAGES = ("danish", "dutch", "english", "finnish", "french", "german", "hungarian", "italian", "norwegian",
              "portuguese", "russian", "spanish", "swedish", "turkish")


class _TextParams(HasInputCol, HasOutputCol):
    pattern = param("regular expression (Java syntax) matching the separators between "
                    "tokens; the default splits on anything that is not a letter, digit or underscore, in any script")
    toLowercase = param("lower-case the text before tokenising", bool)
    minTokenLength = param("shorter tokens are dropped", int)
    removeStopWords = param("drop stop words (stopWords, else the list of "
                            "stopWordsLanguage)", bool)
    stopWordsLanguage = param(f"Spark's stop word list to use: {', '.join(_LANGUAGES)}")
    stopWords = param("your own stop words (non-empty: replaces the language's list)", list[str])
    nGramLengths = param("n-gram lengths whose terms are hashed, e.g. [1, 2] for words "
                         "and word pairs", list[int])
    numFeatures = param("length of the output vector (hash buckets)", int)
    binary = param("1 for a term present instead of its count", bool)
    useIDF = param("weight terms by inverse document frequency learnt in fit", bool)
    minDocFreq = param("terms in fewer documents get weight 0", int)

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(inputCol="text", outputCol="features", pattern=r"(?U)\W+", toLowercase=True, minTokenLength=1,
                         removeStopWords=True, stopWordsLanguage="english", stopWords=[], nGramLengths=[1],
                         numFeatures=1 << 18, binary=False, useIDF=True, minDocFreq=0)

    # -- shared by the estimator and the model -----------------------------------------------------
    def _check(self, schema: T.StructType) -> T.StructType:
        problems = []
        if self.getMinTokenLength() < 0:
            problems.append(f"minTokenLength must be >= 0, got {self.getMinTokenLength()}")
        if not self.getNGramLengths() or min(self.getNGramLengths()) < 1:
            problems.append(f"nGramLengths must hold lengths >= 1, got {self.getNGramLengths()}")
        if self.getNumFeatures() < 1:
            problems.append(f"numFeatures must be >= 1, got {self.getNumFeatures()}")
        if self.getMinDocFreq() < 0:
            problems.append(f"minDocFreq must be >= 0, got {self.getMinDocFreq()}")
        if self.getRemoveStopWords() and not self.getStopWords() and self.getStopWordsLanguage() not in _LANGUAGES:
            problems.append(f"stopWordsLanguage must be one of {', '.join(_LANGUAGES)}, got {self.getStopWordsLanguage()!r}")
        if problems:
            raise StageError(f"{self._describe()}: " + "; ".join(problems))
        self.require_column(schema, self.getInputCol(), "a string column",
                             accept=lambda t: isinstance(t, T.StringType))
        self.require_new_column(schema, self.getOutputCol())
        return T.StructType([*schema.fields, T.StructField(self.getOutputCol(), VectorUDT(), True)])

    def _stop_words(self) -> list[str]:
        from pyspark.ml.feature import StopWordsRemover

        words = self.getStopWords() or StopWordsRemover.loadDefaultStopWords(self.getStopWordsLanguage())
        return sorted({w.lower() for w in words}) if self.getToLowercase() else list(words)

    def _term_frequencies(self, dataset: DataFrame, output: str) -> tuple[DataFrame, list[str]]:
        """``dataset`` with hashed term frequencies in ``output``, and the temporary columns to drop."""
        from pyspark.ml.feature import (
            HashingTF,
            NGram,
            RegexTokenizer,
            StopWordsRemover,
        )

        tmp = f"__{self.uid}_"
        text, tokens = tmp + "text", tmp + "tokens"
        df = dataset.withColumn(text, F.coalesce(F.col(f"`{self.getInputCol()}`"), F.lit("")))
        df = RegexTokenizer(inputCol=text, outputCol=tokens, pattern=self.getPattern(), gaps=True,
                            toLowercase=self.getToLowercase(), minTokenLength=self.getMinTokenLength()).transform(df)
        temporary = [text, tokens]
        if self.getRemoveStopWords():
            words = tmp + "words"
            # tokens are lower-case already when toLowercase: compare exactly (no locale involved)
            df = StopWordsRemover(inputCol=tokens, outputCol=words, stopWords=self._stop_words(),
                                  caseSensitive=self.getToLowercase()).transform(df)
            tokens = words
            temporary.append(words)
        grams = []
        for n in sorted(set(self.getNGramLengths())):
            if n == 1:
                grams.append(tokens)
                continue
            gram = f"{tmp}{n}grams"
            df = NGram(n=n, inputCol=tokens, outputCol=gram).transform(df)
            grams.append(gram)
            temporary.append(gram)
        terms = grams[0]
        if len(grams) > 1:
            terms = tmp + "terms"
            df = df.withColumn(terms, F.concat(*[F.col(g) for g in grams]))
            temporary.append(terms)
        df = HashingTF(inputCol=terms, outputCol=output, numFeatures=self.getNumFeatures(),
                       binary=self.getBinary()).transform(df)
        return df, temporary


class TextFeaturizer(_TextParams, ZooEstimator):
    """Free text in ``inputCol`` to a hashed TF(-IDF) vector in ``outputCol``.

    Defaults: split on non-word characters (any script), lower-case, drop English stop words,
    single words, 2^18 hash buckets, term counts weighted by IDF. ``fit`` learns the document
    frequencies (one pass over the data) when ``useIDF``; without it ``fit`` reads nothing.
    """

    zoo_name = "text_featurizer"
    zoo_streaming = True  # checked by the kit's streaming check

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None, pattern: str | None = None,
                 toLowercase: bool | None = None, minTokenLength: int | None = None, removeStopWords: bool | None = None,
                 stopWordsLanguage: str | None = None, stopWords: list[str] | None = None,
                 nGramLengths: list[int] | None = None, numFeatures: int | None = None, binary: bool | None = None,
                 useIDF: bool | None = None, minDocFreq: int | None = None):
        super().__init__()
        self._set(**self._input_kwargs)

    def _setter(name):  # noqa: N805 - builds the setX methods
        def set_value(self, value):
            return self._set(**{name: value})

        set_value.__name__ = "set" + name[0].upper() + name[1:]
        set_value.__doc__ = f"Sets the value of :py:attr:`{name}`."
        return set_value

    setInputCol = _setter("inputCol")
    setOutputCol = _setter("outputCol")
    setPattern = _setter("pattern")
    setToLowercase = _setter("toLowercase")
    setMinTokenLength = _setter("minTokenLength")
    setRemoveStopWords = _setter("removeStopWords")
    setStopWordsLanguage = _setter("stopWordsLanguage")
    setStopWords = _setter("stopWords")
    setNGramLengths = _setter("nGramLengths")
    setNumFeatures = _setter("numFeatures")
    setBinary = _setter("binary")
    setUseIDF = _setter("useIDF")
    setMinDocFreq = _setter("minDocFreq")
    del _setter

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        return self._check(schema)

    def _fit_validated(self, dataset: DataFrame) -> "TextFeaturizerModel":
        model = TextFeaturizerModel()
        self._copyValues(model)
        if self.getUseIDF():
            from pyspark.ml.feature import IDF

            tf = f"__{self.uid}_tf"
            df, _ = self._term_frequencies(dataset, tf)
            try:
                model._inner = IDF(inputCol=tf, outputCol=self.getOutputCol(), minDocFreq=self.getMinDocFreq()).fit(df)
            except Exception as exc:  # Spark's IDF on no rows: "Haven't seen any document yet"
                if "seen any document" not in str(exc):
                    raise
                raise StageError(f"{self._describe()}: cannot learn document frequencies from an empty DataFrame "
                                 f"(no rows in {self.getInputCol()!r}); fit on at least one row, or set useIDF=False") \
                    from None
        return model._resetUid(f"{type(model).__name__}_{self.uid.split('_')[-1]}")

    @classmethod
    def zoo_examples(cls, spark):
        reviews = spark.createDataFrame([
            ("r1", "The snow leopard is rarely seen; the camera saw it twice."),
            ("r2", "A camera trap photographed a snow leopard at night."),
            ("r3", "Nothing but wind and rocks in these photos."),
            ("r4", None),
            ("r5", "Schneeleopard: très rare, 雪豹 (Panthera uncia)!"),
        ], "id string, text string")
        return [
            StageExample(cls(), reviews),
            StageExample(cls(inputCol="text", outputCol="tfidf", nGramLengths=[1, 2], numFeatures=64, minDocFreq=2), reviews),
            StageExample(cls(removeStopWords=False, useIDF=False, binary=True, numFeatures=32, toLowercase=False), reviews),
        ]

    @classmethod
    def zoo_fuzz_schema(cls):
        return T.StructType([T.StructField("text", T.StringType())])


class TextFeaturizerModel(HasInnerModel, _TextParams, ZooModel):
    """A fitted :class:`TextFeaturizer`: the same steps, with the learnt IDF weights (if any) as
    Spark's ``IDFModel`` in ``_inner``, saved in the sub-folder ``idf``."""

    zoo_name = "text_featurizer_model"
    _inner_dir = "idf"

    def __init__(self):
        super().__init__()
        self._inner = None

    @classmethod
    def _inner_class(cls) -> type:
        from pyspark.ml.feature import IDFModel

        return IDFModel

    def _expects_inner(self) -> bool:
        return self.getUseIDF()

    @property
    def idf(self):
        """The learnt inverse document frequencies (a DenseVector), or None without ``useIDF``."""
        return self._inner.idf if self._inner is not None else None

    def transformSchema(self, schema: T.StructType) -> T.StructType:  # noqa: N802
        return self._check(schema)

    def _apply(self, dataset: DataFrame) -> DataFrame:
        if self._inner is None:
            df, temporary = self._term_frequencies(dataset, self.getOutputCol())
            return df.drop(*temporary)
        tf = f"__{self.uid}_tf"
        df, temporary = self._term_frequencies(dataset, tf)
        idf = self._inner.copy({self._inner.inputCol: tf, self._inner.outputCol: self.getOutputCol()})
        return idf.transform(df).drop(*temporary, tf)
