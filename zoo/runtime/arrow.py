"""Arrow arrays from numpy and back, built from buffers.

Executors hand Spark one Arrow record batch per input batch. ``pyarrow.array`` and ``to_numpy``
import pandas (to check for pandas objects), about 45 MB in every Python worker that never uses
it, so these helpers build and read arrays from their buffers: no copy of the values, no pandas.
"""

from __future__ import annotations

import numpy as np


def arrow_values(matrix: np.ndarray, valid: np.ndarray | None = None):
    """A numeric Arrow array for 1-D ``matrix``, else list<…> over its rows, nested once per further
    dimension (no copy of the values); rows where ``valid`` is False are null."""
    import pyarrow as pa

    if matrix.ndim == 1:
        return flat_array(matrix)
    n, width = matrix.shape[:2]
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    validity = None if valid is None or valid.all() else bitmap(valid)
    matrix = np.ascontiguousarray(matrix)
    values = arrow_values(matrix.reshape(n * width, *matrix.shape[2:])) if matrix.ndim > 2 else \
        flat_array(matrix.reshape(-1))
    return pa.Array.from_buffers(pa.list_(values.type), n, [validity, offsets], children=[values])


def flat_array(values: np.ndarray):
    """A 1-D Arrow array over ``values``' memory (booleans are packed into bits)."""
    import pyarrow as pa

    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, bitmap(values)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def numpy_view(array) -> np.ndarray:
    """A numpy view of a null-free numeric or boolean Arrow array (``to_numpy`` imports pandas)."""
    import pyarrow as pa

    t, n = array.type, len(array)
    if pa.types.is_boolean(t):
        if n == 0:
            return np.empty(0, np.bool_)
        bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
        return bits[array.offset:array.offset + n].astype(np.bool_)
    if pa.types.is_floating(t):
        dtype = np.dtype(f"float{t.bit_width}")
    elif pa.types.is_integer(t):
        dtype = np.dtype(f"{'int' if pa.types.is_signed_integer(t) else 'uint'}{t.bit_width}")
    else:
        return array.to_numpy(zero_copy_only=False)
    if n == 0:
        return np.empty(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype, count=n, offset=array.offset * dtype.itemsize)


def bitmap(flags: np.ndarray):
    """Arrow's bit-packed (least significant bit first) form of a boolean numpy array."""
    import pyarrow as pa

    return pa.py_buffer(np.packbits(flags.astype(np.bool_, copy=False), bitorder="little"))


def with_outcomes(columns: list, names: list[str], errors: list, valid: np.ndarray, handle_invalid: str,
                  error_col: str):
    """One output record batch of a stage with ``handleInvalid``: ``keep`` adds the reasons in
    ``error_col`` (null for rows that made it), ``skip`` keeps only the ``valid`` rows; ``error``
    never gets here with an invalid row (it raised at the row)."""
    import pyarrow as pa

    if handle_invalid == "keep":
        columns, names = [*columns, pa.array(errors, type=pa.string())], [*names, error_col]
    out = pa.RecordBatch.from_arrays(columns, names=names)
    if handle_invalid == "skip" and not valid.all():
        out = out.filter(flat_array(np.asarray(valid, dtype=bool)))
    return out
