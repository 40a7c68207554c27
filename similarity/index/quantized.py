"""Field vectors stored as 8-bit codes (the default): half the size of float16, a quarter of float32.

Symmetric scalar quantisation with one scale per dimension: ``code = round(x / scale[d])`` in
``[-127, 127]``, ``scale[d] = max |x[..., d]| / 127`` over the whole build, so a missing field (a
zero vector) stays exactly zero and each dimension uses its full range (MiniLM's vectors have a few
dimensions far larger than the rest). Reading rows gives float32 values, ``codes * scale``: every
consumer of an index's field vectors (the signals, diversity, trial vectors, updates) slices it like
an array and never sees the codes.

Files, in a build: ``field_vectors.npy`` (``int8``, ``(n, F, d)``, read by rows when served) and
``field_vectors.scale.npy`` (``float32``, ``(d,)``). A build whose field vectors are float16 has no
scale file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import IndexMismatch, InvalidParameter
from ._files import NpyRows, ReadAsArray, save_npy

__all__ = ["QuantizedVectors", "SCALE_FILE", "VECTOR_DTYPES", "load_field_vectors", "save_field_vectors",
           "store_field_vectors"]

SCALE_FILE = "field_vectors.scale.npy"
#: How a build may store its field vectors (``IndexConfig.vectors``).
VECTOR_DTYPES = ("float16", "int8")
_BLOCK = 50_000  # rows quantised at once: bounded memory at any size


class QuantizedVectors(ReadAsArray):
    """An ``(n, F, d)`` array of int8 codes read as float32 through a per-dimension scale.

    Args:
        codes: ``int8`` codes, shape ``(n, F, d)`` (an array, or rows read from the build's file).
        scale: ``float32`` scale of each of the ``d`` dimensions.

    Indexing (``vectors[rows]``, ``vectors[row]``, ``vectors[a:b, j]``) returns float32 values;
    ``np.asarray(vectors)`` all of them. Keys must keep the last axis whole.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, codes: np.ndarray, scale: np.ndarray):
        if codes.dtype != np.int8 or codes.ndim != 3:
            raise InvalidParameter(f"codes must be an int8 (n, F, d) array, got {codes.dtype} {codes.shape}")
        scale = np.asarray(scale, dtype=np.float32)
        if scale.shape != (codes.shape[2],):
            raise InvalidParameter(f"scale must have one value per dimension ({codes.shape[2]}), got {scale.shape}")
        self.codes = codes
        self.scale = scale

    @classmethod
    def quantize(cls, vectors: Any) -> "QuantizedVectors":
        """Codes of ``vectors`` (``(n, F, d)``, any float dtype), in blocks of rows."""
        n = len(vectors)
        dim = vectors.shape[2]
        peak = np.zeros(dim, dtype=np.float32)
        for start in range(0, n, _BLOCK):
            block = np.abs(np.asarray(vectors[start:start + _BLOCK], dtype=np.float32))
            np.maximum(peak, block.max(axis=(0, 1)) if len(block) else 0, out=peak)
        scale = np.where(peak > 0, peak / 127, 1.0).astype(np.float32)
        codes = np.empty(vectors.shape, dtype=np.int8)
        for start in range(0, n, _BLOCK):
            block = np.asarray(vectors[start:start + _BLOCK], dtype=np.float32) / scale
            codes[start:start + _BLOCK] = np.clip(np.rint(block), -127, 127)
        return cls(codes, scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def ndim(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scale.nbytes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key) -> np.ndarray:
        codes = self.codes[key]
        if codes.ndim == 0 or codes.shape[-1] != len(self.scale):
            raise InvalidParameter("quantized vectors are read with the last axis whole")
        return codes.astype(np.float32) * self.scale



def store_field_vectors(vectors: Any, dtype: str) -> "np.ndarray | QuantizedVectors":
    """Field vectors as a build of ``dtype`` (``VECTOR_DTYPES``) keeps them."""
    if dtype == "int8":
        return vectors if isinstance(vectors, QuantizedVectors) else QuantizedVectors.quantize(vectors)
    if dtype == "float16":
        return np.asarray(vectors, dtype=np.float16)
    raise InvalidParameter(f"field vectors are stored as one of {', '.join(VECTOR_DTYPES)}, not {dtype!r}")


def save_field_vectors(build: Path, vectors: "np.ndarray | NpyRows | QuantizedVectors") -> None:
    if isinstance(vectors, QuantizedVectors):
        save_npy(Path(build) / "field_vectors.npy", vectors.codes)
        np.save(Path(build) / SCALE_FILE, vectors.scale)
    else:
        save_npy(Path(build) / "field_vectors.npy", vectors)


def load_field_vectors(build: Path, *, mmap: bool = True) -> "np.ndarray | NpyRows | QuantizedVectors":
    """A build's field vectors: float16 rows, or int8 codes with their scale. ``mmap``: rows read
    from the file when asked for (:class:`~similarity.index._files.NpyRows`), else all in memory."""
    path = Path(build) / "field_vectors.npy"
    array = NpyRows(path) if mmap else np.load(path)
    scale = Path(build) / SCALE_FILE
    if array.dtype == np.int8:
        if not scale.exists():
            raise IndexMismatch(f"{build}: int8 field vectors without {SCALE_FILE}; rebuild the index")
        return QuantizedVectors(array, np.load(scale))
    return array
