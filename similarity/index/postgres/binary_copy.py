"""PostgreSQL's binary ``COPY`` format for fixed-width rows, encoded and decoded with NumPy.

Vectors go in and out of the database by the million; row-by-row adaptation in Python costs
minutes there, while rows of fixed width (``int4``, ``float4``, pgvector's ``vector`` and
``halfvec``) are one NumPy structured array: a ``COPY ... FROM STDIN (FORMAT BINARY)`` stream is
built, and a ``COPY ... TO STDOUT (FORMAT BINARY)`` stream read back, without a Python loop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...exceptions import IndexMismatch

__all__ = ["encode_rows", "decode_rows", "HEADER"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)

# kind -> (value dtype, prefix): pgvector's binary vectors are int16 dim, int16 unused, values
_KINDS = {"int4": (">i4", False), "float4": (">f4", False), "vector": (">f4", True), "halfvec": (">f2", True)}


def _dtype(kinds: Sequence[tuple[str, int]]) -> np.dtype:
    fields = [("count", ">i2")]
    for j, (kind, dim) in enumerate(kinds):
        value, vector = _KINDS[kind]
        size = np.dtype(value).itemsize * (dim if vector else 1)
        fields.append((f"len{j}", ">i4"))
        if vector:
            fields += [(f"dim{j}", ">i2"), (f"unused{j}", ">i2"), (f"v{j}", value, (dim,))]
            size += 4
        else:
            fields.append((f"v{j}", value))
    return np.dtype(fields)


def _sizes(kinds: Sequence[tuple[str, int]]) -> list[int]:
    return [np.dtype(_KINDS[k][0]).itemsize * (d if _KINDS[k][1] else 1) + (4 if _KINDS[k][1] else 0)
            for k, d in kinds]


def encode_rows(columns: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """A whole binary COPY stream of the rows given column by column.

    Args:
        columns: ``(kind, values)`` per column, in the ``COPY`` column order: ``int4`` and
            ``float4`` take ``(n,)`` arrays, ``vector`` and ``halfvec`` ``(n, dim)`` arrays.
    """
    kinds = [(kind, values.shape[1] if values.ndim == 2 else 1) for kind, values in columns]
    n = len(columns[0][1])
    rows = np.empty(n, dtype=_dtype(kinds))
    rows["count"] = len(columns)
    for j, ((kind, values), size) in enumerate(zip(columns, _sizes(kinds))):
        if len(values) != n:
            raise ValueError(f"column {j} has {len(values)} rows, column 0 {n}")
        rows[f"len{j}"] = size
        if _KINDS[kind][1]:
            rows[f"dim{j}"] = values.shape[1]
            rows[f"unused{j}"] = 0
        rows[f"v{j}"] = values
    return HEADER + rows.tobytes() + TRAILER


def decode_rows(data: bytes, kinds: Sequence[tuple[str, int]]) -> list[np.ndarray]:
    """The columns of a binary COPY stream of fixed-width rows (``(kind, dim)`` per column, no NULLs)."""
    dtype = _dtype(kinds)
    if not data.startswith(HEADER[:11]):
        raise IndexMismatch("not a binary COPY stream")
    body = memoryview(data)[len(HEADER):len(data) - len(TRAILER)]
    if len(body) % dtype.itemsize:
        raise IndexMismatch(f"a binary COPY stream of {len(body)} bytes is not rows of {dtype.itemsize} bytes")
    rows = np.frombuffer(body, dtype=dtype)
    sizes = _sizes(kinds)
    for j, size in enumerate(sizes):
        if len(rows) and not (rows[f"len{j}"] == size).all():
            raise IndexMismatch(f"column {j} of a binary COPY stream is not {kinds[j][0]}({kinds[j][1]}) (or NULL)")
    out = []
    for j, (kind, _) in enumerate(kinds):
        native = np.dtype(_KINDS[kind][0]).newbyteorder("=")
        out.append(rows[f"v{j}"].astype(native))
    return out
