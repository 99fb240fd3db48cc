"""``zoo.read_images`` and ``zoo.pipeline``: from a folder of photos to features a SparkML learner uses.

``zoo.pipeline`` builds sparkzoo's own stage classes directly (an augmenter, the featurizer, a group
average) around a head you give; ``zoo.stage(name)`` is the way to build any registered stage by name.
"""

from __future__ import annotations

import os
from typing import Any

from pyspark.ml import Pipeline
from pyspark.sql import DataFrame, SparkSession

from zoo.errors import StageError
from zoo.hub.resolver import pin
from zoo.log import get_logger
from zoo.stages.group_average import GroupAverage
from zoo.stages.image_augmenter import ImageAugmenter
from zoo.stages.image_classifier import ImageClassifier
from zoo.stages.image_featurizer import ImageFeaturizer
from zoo.stages.object_detector import ObjectDetector
from zoo.stages.detection_crops import DetectionCrops
from zoo.stages.workers.image_input import FILES_MARK

FILES_PER_PARTITION = 128


def _parallelism(spark: SparkSession) -> int | None:
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext
        value = spark.conf.get("spark.default.parallelism", None)
        return int(value) if value else None


def default_partitions(files: int, cores: int) -> int:
    """How many partitions ``read_images`` makes of ``files`` files for ``cores`` task slots: about
    ``FILES_PER_PARTITION`` files each (every task costs a fixed ~60 ms, a quarter of MobileNet's
    time on small ones), at least two per core, and always a whole number of waves (a multiple of
    ``cores``): 9 partitions on 2 cores would leave one core idle while the ninth runs alone, up to a
    ninth of the stage's time on a slow model."""
    wanted = max(2 * cores, -(-files // FILES_PER_PARTITION))
    return cores * -(-wanted // cores)


def read_images(spark: SparkSession, path: str, *, recursive: bool = True, glob: str | None = None,
                partitions: int | None = None, content: bool | None = None,
                case_sensitive: bool = False) -> DataFrame:
    """Image files as Spark's ``binaryFile`` rows: ``path``, ``modificationTime``, ``length`` and, where
    the JVM reads the files, ``content``.

    ``glob`` filters file names (e.g. ``"*.jpg"``, Spark's ``pathGlobFilter`` syntax), in any letter
    case unless ``case_sensitive`` (``*.jpg`` finds ``IMG_1.JPG`` too; :func:`any_case`); ``recursive`` descends into sub-folders. Decoding happens later, in
    the featurizer, in native OpenCV.

    ``content`` (default None: False for a local ``path``, True for ``hdfs:``, ``s3a:`` and other
    Hadoop file systems). False leaves the ``content`` column out: the JVM never reads the files,
    and the image stages read each one in the executor's Python worker from the ``path`` column,
    which is marked for them (:data:`~zoo.stages.workers.image_input.FILES_MARK`), so their default
    ``inputCol="content"`` works on either frame. That is the faster way for files the executors
    open as local paths (a laptop, a shared mount; Spark's own ``binaryFile`` reads ``file:`` paths
    on the executors too): shipping each file's bytes from the JVM through Arrow costs about 0.8 ms
    of CPU per photo, and the rows are spread evenly over the partitions (tasks differ by one file
    at most), where coalescing Spark's packing of ~31 files per partition leaves tasks a third apart
    and a core idle at the end of the stage (benchmarks/RESULTS.md). Ask for ``content=True`` to
    have the bytes in the frame (to hash, store or send them elsewhere).

    ``partitions``: Spark packs small files about 31 to a partition (each file "costs"
    ``spark.sql.files.openCostInBytes``, 4 MB), and every task of a Python stage costs a fixed
    ~60 ms on top of its work: a quarter of the time for a fast model such as MobileNet. So by
    default (None) the files go to about 128 per partition but never fewer than two partitions per
    core, in whole waves (:func:`default_partitions`): the listing spread evenly, or with
    ``content=True`` Spark's packing coalesced without a shuffle; Arrow
    batches sent to Python stay bounded by ``spark.sql.execution.arrow.maxBytesPerBatch`` (64 MB)
    whatever the partition size. Give a number to choose the partitions yourself (with
    ``content=True`` only fewer than Spark's own take effect), or 0 to keep Spark's packing.
    """
    if glob and not case_sensitive:
        glob = any_case(glob)
    if content is None:
        content = not _local(spark, path)
    if not content and partitions != 0 and _jvm(spark) is not None and _local(spark, path):
        return _listed_in_python(spark, path, recursive=recursive, glob=glob, case_sensitive=True,
                                 partitions=partitions)
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", str(bool(recursive)).lower())
    if glob:
        reader = reader.option("pathGlobFilter", glob)
    df = reader.load(path)
    if not content:
        df = df.select("path", "modificationTime", "length")  # binaryFile opens no file for these
    files = df.inputFiles() if partitions is None or not content else []
    if not content:
        _check_local(files, path)
    if partitions is None:
        cores = _parallelism(spark)
        partitions = 0 if cores is None else default_partitions(len(files), cores)
    if partitions > 0:
        df = df.coalesce(partitions) if content else _even(spark, df, partitions)
    if not content:
        df = df.withMetadata("path", {**df.schema["path"].metadata, FILES_MARK: True})
    empty = _empty_files(spark, path, recursive=recursive, glob=glob)
    if empty:  # Spark's file sources never list 0-byte files: add them, so they get handleInvalid's outcome
        get_logger("images").info("%d empty (0-byte) files under %s: they are featurized as invalid", len(empty), path)
        rows = spark.createDataFrame([row[:len(df.columns)] for row in empty], df.schema)
        df = df.unionByName(rows)
    return df


def read_images_stream(spark: SparkSession, path: str, *, glob: str | None = None, recursive: bool = True,
                       max_files_per_trigger: int | None = None, case_sensitive: bool = False) -> DataFrame:
    """Image files arriving in a folder, as a Structured Streaming DataFrame with the columns of
    ``read_images(..., content=True)``: ``path``, ``modificationTime``, ``length``, ``content``.

    Spark's file source: each micro-batch reads the files that appeared since the last one, and a
    query with a checkpoint resumes where it stopped, every file once. ``max_files_per_trigger``
    bounds a micro-batch (Spark's ``maxFilesPerTrigger``: the first batch of a full folder would
    otherwise hold every file in it). ``glob`` matches any letter case unless ``case_sensitive``.
    Producers must move finished files into ``path`` (a rename); a file written in place can be
    read half-written. Unlike :func:`read_images`, a 0-byte file gets no row: Spark's file source
    skips empty files and a stream cannot add them (docs/python-api.md, "Streaming")."""
    reader = (spark.readStream.format("binaryFile").schema(_listing_schema(content=True))
              .option("recursiveFileLookup", str(bool(recursive)).lower()))
    if glob:
        reader = reader.option("pathGlobFilter", glob if case_sensitive else any_case(glob))
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", int(max_files_per_trigger))
    return reader.load(path)


def any_case(glob: str) -> str:
    """``glob`` matching names in any letter case (``*.jpg`` -> ``*.[jJ][pP][gG]``), in the syntax
    both Hadoop's ``GlobFilter`` and Python's ``fnmatch`` read. Cameras write ``.JPG``, ImageNet
    ``.JPEG``, scripts ``.jpg``: a case-sensitive glob silently finds nothing. Letters inside a
    ``[...]`` class are left as written (the class says what it means)."""
    out, depth = [], 0
    for ch in glob:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
        out.append(f"[{ch.lower()}{ch.upper()}]" if ch.isalpha() and not depth and ch.lower() != ch.upper() else ch)
    return "".join(out)


def _braces(glob: str) -> list[str]:
    """``*.{jpg,png}`` as the patterns ``fnmatch`` reads (it has no braces; Hadoop's glob does)."""
    start = glob.find("{")
    end = glob.find("}", start)
    if start < 0 or end < 0:
        return [glob]
    return [x for option in glob[start + 1:end].split(",") for x in _braces(glob[:start] + option + glob[end + 1:])]


def list_images(path: str, *, glob: str | None = None, recursive: bool = True, case_sensitive: bool = False) -> list[str]:
    """The local files ``read_images(spark, path, glob=...)`` reads, listed by Python without Spark
    (sorted ``file:`` URIs; names Spark skips, ``.x`` and ``_x``, left out): to say before Spark starts
    that a path is missing or that nothing matches.

    Raises :class:`zoo.errors.InputError` when ``path`` does not exist. ``glob`` matches file names
    in any letter case unless ``case_sensitive``."""
    return [uri for uri, _ in _local_files(path, glob=glob, recursive=recursive, case_sensitive=case_sensitive)]


def _local_files(path: str, *, glob: str | None, recursive: bool, case_sensitive: bool) -> list[tuple[str, os.stat_result]]:
    """(``file:`` URI, stat) of every file Spark's ``binaryFile`` source would list under a local
    ``path`` (0-byte files too), sorted: hidden names skipped as Spark skips them, symlinked folders
    followed as Hadoop's local file system follows them (each real folder once)."""
    import fnmatch
    import glob as globbing
    from urllib.parse import urlsplit

    from zoo.errors import InputError

    root = urlsplit(path).path if urlsplit(path).scheme == "file" else path
    root = os.path.expanduser(root)
    tops = sorted(globbing.glob(root)) if globbing.has_magic(root) else [root] if os.path.exists(root) else []
    if not tops:
        raise InputError(f"input {path!r} does not exist" + ("" if os.path.isabs(root) else f" (from {os.getcwd()})"))
    patterns = _braces(glob if case_sensitive else any_case(glob)) if glob else []
    found, seen = [], set()
    for top in tops:
        if os.path.isfile(top):
            candidates = [top]
        else:
            candidates = []
            for folder, dirs, files in os.walk(top, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:  # a link back up the tree
                    dirs[:] = []
                    continue
                seen.add(real)
                dirs[:] = sorted(d for d in dirs if not _hidden(d)) if recursive else []
                candidates.extend(os.path.join(folder, f) for f in sorted(files) if not _hidden(f))
        for c in candidates:
            if patterns and not any(fnmatch.fnmatchcase(os.path.basename(c), p) for p in patterns):
                continue
            try:
                st = os.stat(c)
            except OSError:  # a dangling link: Spark's listing skips it too
                continue
            found.append((f"file:{os.path.abspath(c)}", st))
    return sorted(found)


def _listing_schema(content: bool = False):
    """``binaryFile``'s columns (built in Python: parsing a DDL string costs a JVM round trip, 0.4 s
    on the first call of a session)."""
    from pyspark.sql import types as T

    fields = [T.StructField("path", T.StringType()), T.StructField("modificationTime", T.TimestampType()),
              T.StructField("length", T.LongType())]
    return T.StructType(fields + ([T.StructField("content", T.BinaryType())] if content else []))


def _listed_in_python(spark: SparkSession, path: str, *, recursive: bool, glob: str | None,
                      case_sensitive: bool, partitions: int | None) -> DataFrame:
    """``read_images`` of a local folder without Spark listing it: the files listed here and handed
    to Spark as rows, evenly over the partitions. Spark's own listing of a folder runs a job (32
    tasks once it holds more than 32 folders) and a second one to spread it; a 100-photo job was
    mostly such fixed costs (benchmarks/RESULTS.md)."""
    import datetime as dt

    schema = _listing_schema()
    utc = dt.timezone.utc
    rows = []
    for uri, st in _local_files(path, glob=glob, recursive=recursive, case_sensitive=case_sensitive):
        ms = st.st_mtime_ns // 1_000_000  # Hadoop's local file system says milliseconds: the same keys as before
        rows.append((uri, dt.datetime.fromtimestamp(ms // 1000, utc) + dt.timedelta(milliseconds=ms % 1000), st.st_size))
    empty = sum(1 for r in rows if r[2] == 0)
    if empty:
        get_logger("images").info("%d empty (0-byte) files under %s: they are featurized as invalid", empty, path)
    if partitions is None:
        cores = _parallelism(spark) or 1
        partitions = default_partitions(len(rows), cores)
    df = _parallelized(spark, rows, schema, partitions)
    return df.withMetadata("path", {**df.schema["path"].metadata, FILES_MARK: True})


def _even(spark: SparkSession, listing: DataFrame, partitions: int) -> DataFrame:
    """``listing`` (a few bytes per file) in ``partitions`` partitions whose counts differ by at most one.

    The rows are collected and handed back with :func:`_parallelized`, so no shuffle: a shuffle's
    cleanup at shutdown made a failing cluster application print Netty's RejectedExecutionException
    after sparkzoo's own one-line error. Under Spark Connect (no SparkContext) Spark's packing is
    coalesced."""
    if _jvm(spark) is None:  # Spark Connect
        return listing.coalesce(partitions)
    return _parallelized(spark, [tuple(r) for r in listing.collect()], listing.schema, partitions)


def _parallelized(spark: SparkSession, rows: list[tuple], schema, partitions: int) -> DataFrame:
    """``rows`` as a DataFrame of ``partitions`` partitions (sorted by the first column: the same
    partitions every time), whose counts differ by at most one. The JVM unpickles the rows itself,
    as PySpark's ``createDataFrame`` does for a local list: ``createDataFrame(rdd)`` would run a
    Python worker in every task only to convert them (MobileNet on 300 photos: 303 -> 346 img/s;
    benchmarks/RESULTS.md)."""
    context = spark.sparkContext
    rows = sorted(rows)
    parallel = context.parallelize([schema.toInternal(r) for r in rows], max(1, min(partitions, len(rows))))
    try:
        serde = context._jvm.SerDeUtil
        java_rows = serde.toJavaArray(serde.pythonToJava(parallel._jrdd, True))
        return DataFrame(spark._jsparkSession.applySchemaToPythonRDD(java_rows.rdd(), schema.json()), spark)
    except Exception as exc:  # PySpark's internals moved: the public way, a Python worker per task
        get_logger("images").debug("listing through createDataFrame(rdd): %s", exc)
        return spark.createDataFrame(context.parallelize(rows, parallel.getNumPartitions()), schema)


def _check_local(files: list[str], path: str) -> None:
    """``content=False`` needs files an executor opens as local paths; say which one is not."""
    remote = next((f for f in files if not f.startswith("file:")), None)
    if remote is not None:
        raise StageError(f"read_images({path!r}, content=False): {remote} is not on a local file system, and "
                         "executors read these files as local paths; use content=True (Spark reads any Hadoop "
                         "file system)")


def _empty_files(spark: SparkSession, path: str, *, recursive: bool, glob: str | None) -> list[tuple]:
    """``binaryFile`` rows (path, modificationTime, length 0, empty content) for the 0-byte files
    Spark's listing leaves out, found with the same rules: hidden names (``.x``, ``_x``) skipped,
    ``glob`` matched on the file name.

    Local paths are listed in Python (fast); other file systems through Hadoop's FileSystem API in
    classic Spark; under Spark Connect a remote path cannot be listed from here, and is left as is."""
    import datetime as dt
    import fnmatch
    import os
    from urllib.parse import urlsplit

    scheme = urlsplit(path).scheme
    jvm = _jvm(spark)
    found: list[tuple[str, float]] = []
    if _local(spark, path):
        import glob as globbing

        root = urlsplit(path).path if scheme else path
        candidates = []
        for top in globbing.glob(root) if globbing.has_magic(root) else [root]:
            if os.path.isfile(top):
                candidates.append(top)
                continue
            for folder, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not _hidden(d)] if recursive else []
                candidates.extend(os.path.join(folder, f) for f in files if not _hidden(f))
        for name in candidates:
            st = os.stat(name)
            if st.st_size == 0:
                found.append((f"file:{os.path.abspath(name)}", st.st_mtime))
    elif jvm is not None:
        hadoop = jvm.org.apache.hadoop.fs
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        base = hadoop.Path(path)
        listing = base.getFileSystem(conf).listFiles(base, bool(recursive))
        while listing.hasNext():
            status = listing.next()
            if status.getLen() == 0 and not _hidden(status.getPath().getName()):
                found.append((status.getPath().toString(), status.getModificationTime() / 1000.0))
    if glob and found:
        if jvm is not None:  # Hadoop's own glob syntax ({a,b}, [!x]) as pathGlobFilter uses it
            accept = jvm.org.apache.hadoop.fs.GlobFilter(glob).accept
            found = [f for f in found if accept(jvm.org.apache.hadoop.fs.Path(f[0]))]
        else:
            found = [f for f in found if fnmatch.fnmatchcase(f[0].rsplit("/", 1)[-1], glob)]
    return [(p, dt.datetime.fromtimestamp(t), 0, b"") for p, t in sorted(found)]


def _local(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` is on the local file system: ``file:``, or no scheme with a local default
    file system (under Spark Connect the default file system is taken to be local)."""
    from urllib.parse import urlsplit

    scheme = urlsplit(path).scheme
    jvm = _jvm(spark)
    default_fs = jvm.org.apache.hadoop.fs.FileSystem.getDefaultUri(
        spark.sparkContext._jsc.hadoopConfiguration()).getScheme() if jvm is not None else "file"
    return scheme == "file" or (scheme == "" and default_fs in (None, "file"))


def _hidden(name: str) -> bool:
    """Spark's rule for names its file listing skips (InMemoryFileIndex.shouldFilterOutPathName)."""
    return (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")


def _jvm(spark: SparkSession):
    """The driver's JVM gateway in classic Spark; None under Spark Connect."""
    try:
        return spark.sparkContext._jvm
    except Exception:
        return None


def pipeline(
    name: str,
    cut: int | str | None = None,
    *,
    inputCol: str = "content",  # noqa: N803 - SparkML's spelling
    outputCol: str = "features",  # noqa: N803
    augment: bool | list[str] = False,
    ensemble_by: str | None = None,
    head: Any = None,
    embed: bool = False,
    predict: bool = False,
    detect: bool = False,
    then: str | None = None,
    then_cut: int | str | None = None,
    then_params: dict[str, Any] | None = None,
    margin: float = 0.1,
    **stage_params: Any,
) -> Pipeline:
    """A ``Pipeline``: (augmenter) -> featurizer -> (``head``, e.g. LogisticRegression) -> (group average).

    The featurizer is pinned to the sha256 ``name`` resolves to now, so a saved ``PipelineModel``
    loads anywhere the zoo can serve that exact file. ``augment=True`` adds left-right flipped rows
    (a list such as ``["flip_lr", "flip_ud"]`` picks the variants). ``ensemble_by`` averages the
    head's ``probability`` (or, without a head, the features) over rows sharing that column's value
    (a photo id for test-time augmentation, a burst id for camera bursts). ``embed=True`` saves the
    (cut) model's bytes inside the saved pipeline, so it loads with no zoo source. Other keyword arguments
    set featurizer params (``batchSize``, ``device``, ``handleInvalid``, ``outputFormat``, ...).

    ``cut`` defaults to 1 (features). ``predict=True`` classifies instead, with the whole model
    (``cut`` must be 0 or left out): an ``image_classifier`` adds ``prediction``, ``probability``,
    ``label`` and ``topK`` (``k``, ``labels`` and ``activation`` are its params; ``inputCol`` is kept).

    ``detect=True`` runs ``name`` as an object detector (``detections``: boxes in the image's pixels;
    ``scoreThreshold``, ``nmsIou``, ``maxDetections``, ``classes`` are its params). With ``then``, the
    camera-trap flow: each detection is cut out (``margin``: a fraction of the box added on each side)
    into its own row, keeping the image's columns and the box (``detection``), and ``then`` classifies
    the crops (``prediction``, ``label``, ``topK``), or with ``then_cut`` featurizes them (``features``)
    for ``head`` (any SparkML learner); ``then_params`` sets that stage's params (``k``, ``batchSize``, ...).
    One pipeline: it fits, saves and loads as a whole.
    """
    if detect:
        return _detection_pipeline(name, inputCol, outputCol, then, then_cut, margin, head, embed, stage_params,
                                   then_params or {})
    if predict and (cut not in (None, 0) or head is not None or ensemble_by):
        raise StageError("zoo.pipeline(predict=True) classifies with the whole model: leave cut out (or 0), and use "
                         "head/ensemble_by with features (predict=False)")
    stages: list[Any] = []
    if augment:
        variants = ["flip_lr"] if augment is True else list(augment)
        stages.append(ImageAugmenter(inputCol=inputCol, variants=variants))
    model_params = dict(inputCol=inputCol, modelName=name, modelSha256=pin(name), embedModel=embed, **stage_params)
    if predict:
        return Pipeline(stages=[*stages, _built(ImageClassifier, model_params)])
    stages.append(_built(ImageFeaturizer, {**model_params, "outputCol": outputCol, "cut": 1 if cut is None else cut}))
    if head is not None:
        if head.hasParam("featuresCol"):
            head.set(head.getParam("featuresCol"), outputCol)
        stages.append(head)
    if ensemble_by:
        averaged = "probability" if head is not None and head.hasParam("probabilityCol") else outputCol
        if head is not None and head.hasParam("probabilityCol"):
            averaged = head.getOrDefault(head.getParam("probabilityCol"))
        stages.append(GroupAverage(inputCol=averaged, keyCol=ensemble_by, outputCol=f"{averaged}_avg"))
    return Pipeline(stages=stages)


def _detection_pipeline(name: str, input_col: str, output_col: str, then: str | None, then_cut: int | str | None,
                        margin: float, head: Any, embed: bool, params: dict[str, Any],
                        then_params: dict[str, Any]) -> Pipeline:
    """object_detector (-> detection_crops -> image_classifier | image_featurizer (-> head))."""
    if embed:
        raise StageError("zoo.pipeline(detect=True): embed is not available for detectors yet; the saved pipeline "
                         "pins the detector's sha256 (served by the cache or ZOO_MIRRORS)")
    if then is None and (then_cut is not None or head is not None):
        raise StageError("zoo.pipeline(detect=True): then_cut and head act on the crops: name the crop model with then=")
    stages: list[Any] = [_built(ObjectDetector, dict(inputCol=input_col, modelName=name, modelSha256=pin(name),
                                                      **params))]
    if then is None:
        return Pipeline(stages=stages)
    stages.append(DetectionCrops(inputCol=input_col, margin=margin))
    crops = dict(inputCol="crop", modelName=then, modelSha256=pin(then), handleInvalid="keep", errorCol="crop_error",
                 **then_params)
    if then_cut is None:
        if head is not None:
            raise StageError("zoo.pipeline(detect=True, head=...): a head learns from features: give then_cut (e.g. 1)")
        stages.append(_built(ImageClassifier, crops))
        return Pipeline(stages=stages)
    stages.append(_built(ImageFeaturizer, {**crops, "cut": then_cut, "outputCol": output_col}))
    if head is not None:
        if head.hasParam("featuresCol"):
            head.set(head.getParam("featuresCol"), output_col)
        stages.append(head)
    return Pipeline(stages=stages)


def _built(cls: type, params: dict[str, Any]) -> Any:
    """``cls(**params)``; an unknown keyword names the stage and lists its params."""
    try:
        return cls(**params)
    except TypeError as exc:
        known = ", ".join(sorted(p.name for p in cls().params))
        raise StageError(f"stage {cls.zoo_name!r}: {exc}. Its params: {known}") from None
