"""Backends by name: a new one from a typed name, a saved one from its directory.

The one module that knows every backend class (the base class knows none); a new backend is a
module beside :mod:`.faiss` and :mod:`.numpy` and one entry in each function here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...exceptions import IndexMismatch, InvalidParameter
from ..neighbours import NeighbourLists
from .base import BackendName, VectorBackend
from .faiss import FaissBackend
from .numpy import NumpyBackend

__all__ = ["make_backend", "load_backend", "EXACT_LIMIT"]

EXACT_LIMIT = 200_000
"""``auto`` stays exact (FAISS flat) up to this many vectors and switches to IVF above."""


def make_backend(name: BackendName, dim: int, n_vectors: int = 0) -> VectorBackend:
    """A new empty backend; ``auto`` picks exact up to :data:`EXACT_LIMIT` vectors, IVF-SQ8 above.

    IVF rather than HNSW above the limit: on a small machine it builds in a minute where HNSW
    takes tens of minutes at a million vectors, it can remove vectors, and related lists of
    indexed trials come from precomputed neighbour lists anyway (see :mod:`similarity.index.neighbours`).
    8-bit codes rather than float32: a quarter of the memory (224 MB instead of 879 MB at 0.6M
    trials); the ranker re-scores its candidates with the stored field vectors, which refines the
    coarse search (``benchmarks/performance.md`` gives the related-list recall against exact).
    """
    if name == "auto":
        name = "flat" if n_vectors <= EXACT_LIMIT else "ivf-sq8"
    if name == "numpy":
        return NumpyBackend(dim)
    if name in ("flat", "hnsw", "ivf", "ivf-sq8"):
        return FaissBackend(dim, kind=name)
    raise InvalidParameter(f"unknown backend {name!r}; allowed: auto, numpy, flat, hnsw, ivf, ivf-sq8")


def load_backend(path: str | Path) -> VectorBackend:
    """Load the backend saved in directory ``path``."""
    path = Path(path)
    try:
        meta = json.loads((path / "backend.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"{path}: no readable backend.json ({exc})") from None
    classes = {"numpy": NumpyBackend, "flat": FaissBackend, "hnsw": FaissBackend, "ivf": FaissBackend,
               "ivf-sq8": FaissBackend}
    if meta.get("name") not in classes:
        raise IndexMismatch(f"{path}: unknown backend {meta.get('name')!r}")
    backend = classes[meta["name"]]._load(path, int(meta["dim"]))
    backend.neighbours = NeighbourLists.load(path)
    return backend
