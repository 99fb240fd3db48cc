"""Hypothesis strategies that generate rows for a Spark schema, edge cases first.

Nulls everywhere, NaN and infinities, the extremes of each integer width, unicode text (including
astral-plane characters), dates and timestamps (1900-2100, with the epoch, the 2038 edge and a
leap day), empty arrays and empty DataFrames.
"""

from __future__ import annotations

import datetime as _dt

from hypothesis import strategies as st
from pyspark.sql import types as T

_INT_BOUNDS = {
    T.ByteType: (-(2**7), 2**7 - 1),
    T.ShortType: (-(2**15), 2**15 - 1),
    T.IntegerType: (-(2**31), 2**31 - 1),
    T.LongType: (-(2**63), 2**63 - 1),
}


def values_for(data_type: T.DataType, nullable: bool = True) -> st.SearchStrategy:
    """Values of one Spark type (None included when nullable)."""
    if isinstance(data_type, T.DoubleType):
        base = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324])
    elif isinstance(data_type, T.FloatType):
        base = st.floats(allow_nan=True, allow_infinity=True, width=32)
    elif type(data_type) in _INT_BOUNDS:
        lo, hi = _INT_BOUNDS[type(data_type)]
        base = st.integers(lo, hi) | st.sampled_from([lo, hi, 0])
    elif isinstance(data_type, T.BooleanType):
        base = st.booleans()
    elif isinstance(data_type, T.StringType):
        base = st.text(max_size=12) | st.sampled_from(["", "ü", "日本語", "🐆", "a\x00b"])
    elif isinstance(data_type, T.BinaryType):
        base = st.binary(max_size=16)
    elif isinstance(data_type, (T.TimestampType, T.TimestampNTZType)):
        # 1900-2100: Python's conversion of earlier times depends on the platform's calendar support
        base = st.datetimes(_dt.datetime(1900, 1, 1), _dt.datetime(2100, 12, 31)) | st.sampled_from(
            [_dt.datetime(1970, 1, 1), _dt.datetime(2038, 1, 19, 3, 14, 8), _dt.datetime(2000, 2, 29, 23, 59, 59)])
    elif isinstance(data_type, T.DateType):
        base = st.dates(_dt.date(1900, 1, 1), _dt.date(2100, 12, 31)) | st.sampled_from([_dt.date(1970, 1, 1), _dt.date(2000, 2, 29)])
    elif isinstance(data_type, T.ArrayType):
        base = st.lists(values_for(data_type.elementType, data_type.containsNull), max_size=6)
    else:
        raise TypeError(f"no strategy for Spark type {data_type.simpleString()}")
    return (st.none() | base) if nullable else base


def rows_for(schema: T.StructType, max_rows: int = 12) -> st.SearchStrategy:
    """Lists of row tuples matching ``schema`` (empty lists included)."""
    row = st.tuples(*[values_for(f.dataType, f.nullable) for f in schema.fields])
    return st.lists(row, min_size=0, max_size=max_rows)
