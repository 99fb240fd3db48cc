"""One column of images, read the same way by ``image_featurizer``, ``image_transformer`` and
``image_augmenter``: which column types hold images (on the driver), and on the executors the
pixels of one row and the name a message gives that row.

An image column holds encoded bytes (``binaryFile``'s ``content``), an image struct (Spark's
``image`` source: ``height``, ``width``, ``nChannels``, ``mode``, ``data``, BGR) or a file path
(a string, ``file:`` URLs too). Decoding yields 8-bit BGR pixels (:mod:`zoo.runtime.imaging`);
every failure is an :class:`~zoo.errors.ImageError` the stage turns into its ``handleInvalid``
outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from zoo.errors import ImageError
from zoo.runtime import imaging

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import types as T

IMAGE_FIELDS = {"height", "width", "nChannels", "mode", "data"}
KINDS = ("binary", "struct", "path")
EXPECTED = "binary image bytes (binaryFile's content), an image struct (Spark's image source) or a file path string"
FILES_MARK = "zoo.imageFiles"  # column metadata: zoo.read_images listed these files and left their bytes to the executors


def image_column(schema: "T.StructType", column: str) -> str:
    """The column a stage given ``inputCol=column`` reads its images from.

    ``column`` itself when the frame has it. ``zoo.read_images`` on local files leaves binaryFile's
    ``content`` out (the executors read the files, faster than shipping bytes from the JVM) and marks
    its ``path`` column with :data:`FILES_MARK`; a stage asked for the ``content`` it left out reads
    that marked ``path`` instead, so the defaults (``inputCol="content"``) work on either frame. An
    unmarked ``path`` is never taken for images: a frame that merely lacks ``content`` is a schema error.
    """
    names = schema.fieldNames()
    if column in names or column != "content" or "path" not in names:
        return column
    return "path" if schema["path"].metadata.get(FILES_MARK) else column


def input_kind(t: "T.DataType") -> str | None:
    """``binary``, ``struct`` or ``path`` for a column type that holds images, else None."""
    from pyspark.sql import types as T

    if isinstance(t, T.BinaryType):
        return "binary"
    if isinstance(t, T.StringType):
        return "path"
    if isinstance(t, T.StructType) and IMAGE_FIELDS <= set(t.fieldNames()):
        return "struct"
    return None


@dataclass(frozen=True)
class ImageInput:
    """How executors read the images of one column (picklable; built on the driver by :meth:`of`)."""

    column: str
    kind: str  # binary | struct | path
    name_col: str | None  # a column naming each row in messages (the path, or the struct's origin)
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS

    @classmethod
    def of(cls, schema: "T.StructType", column: str, max_pixels: int = imaging.DEFAULT_MAX_PIXELS) -> "ImageInput":
        """The input of ``column`` in ``schema`` (already checked to hold images): rows are named by the
        column itself for paths and structs, else by a ``path`` column when there is one."""
        column = image_column(schema, column)
        kind = input_kind(schema[column].dataType)
        name_col = column if kind in ("path", "struct") else ("path" if "path" in schema.fieldNames() else None)
        return cls(column, kind, name_col, max_pixels)

    def pixels(self, item: Any, reduction: Callable[[int, int], int] | None = None) -> "np.ndarray":
        """8-bit BGR pixels of one row's value (``reduction``: see :func:`zoo.runtime.imaging.decode`)."""
        if item is None:
            return imaging.decode(None)
        if self.kind == "struct":
            return imaging.from_struct(item["height"], item["width"], item["nChannels"], item["mode"], item["data"])
        if self.kind == "path":
            try:
                item = _read_file(item)
            except OSError as exc:
                raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
        return imaging.decode(item, self.max_pixels, reduction)

    def encoded(self, path: str | None) -> bytes | None:
        """The bytes of the file a ``path`` row names; None for a null or a file that cannot be read (the
        featurizer reports such a row as invalid, naming the file)."""
        try:
            return None if path is None else _read_file(path)
        except OSError:
            return None

    def row_name(self, batch: Any, i: int, offset: int) -> str:
        """``file <path>`` when the row has one, else ``row N of partition P`` (``offset``: rows of the
        partition before this batch)."""
        if self.name_col:
            value = batch.column(batch.schema.get_field_index(self.name_col))[i].as_py()
            if isinstance(value, dict):
                value = value.get("origin")
            if value:  # "file /a/b.jpg", not "file file:/a/b.jpg"
                return f"file {value[5:] if isinstance(value, str) and value.startswith('file:/') else value}"
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = f" of partition {ctx.partitionId()}" if ctx is not None else ""
        return f"row {offset + i}{part}"


def local_path(path: str) -> str:
    """The local file a path string names. Two spellings reach a DataFrame: Hadoop's ``file:/a b.jpg``
    (Spark's ``binaryFile`` ``path``, ``Path.toString``: the name as it is, never percent-encoded) and
    URLs ``file:///a%20b.jpg`` (``pathlib``'s ``as_uri``: percent-encoded). Decoding the first would
    open ``a b.jpg`` for a file named ``a%20b.jpg``, and cut ``x#1.jpg`` at the ``#``."""
    if path.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return url2pathname(urlparse(path).path)
    return path[len("file:"):] if path.startswith("file:") else path


def _read_file(path: str) -> bytes:
    with open(local_path(path), "rb") as fh:
        return fh.read()
