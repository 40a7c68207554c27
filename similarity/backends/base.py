"""The vector-store interface: add / search / remove / save / load / count over unit vectors."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np

from ..exceptions import IndexMismatch, InvalidParameter

__all__ = ["BackendName", "VectorBackend", "make_backend", "load_backend", "EXACT_LIMIT"]

BackendName = Literal["auto", "numpy", "flat", "hnsw", "ivf", "ivf-sq8"]

EXACT_LIMIT = 200_000
"""``auto`` stays exact (FAISS flat) up to this many vectors and switches to IVF above."""


class VectorBackend(ABC):
    """Inner-product search over unit vectors, each stored under an int64 id.

    ``neighbours`` optionally holds precomputed :class:`~similarity.neighbours.NeighbourLists`
    of the stored vectors (ids ``0..n-1``); they are saved and loaded with the backend.
    """

    name: str
    neighbours = None

    def __init__(self, dim: int):
        if dim < 1:
            raise InvalidParameter(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidParameter(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    @abstractmethod
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Store ``vectors`` under ``ids`` (int64, unique, not already present)."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ids per query and their scores; id -1 pads a short row.

        ``allowed`` restricts the search to those ids, inside the search, so a filtered query
        still returns ``k`` results when ``k`` allowed vectors exist.
        """

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present."""

    @property
    @abstractmethod
    def count(self) -> int:
        """Number of stored vectors."""

    @abstractmethod
    def _save(self, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, dim: int) -> "VectorBackend": ...

    def save(self, path: str | Path) -> None:
        """Write the backend into directory ``path`` (created) with a small ``backend.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._save(path)
        if self.neighbours is not None:
            self.neighbours.save(path)
        (path / "backend.json").write_text(json.dumps({"name": self.name, "dim": self.dim}))


def make_backend(name: BackendName, dim: int, n_vectors: int = 0) -> VectorBackend:
    """A new empty backend; ``auto`` picks exact up to :data:`EXACT_LIMIT` vectors, IVF-SQ8 above.

    IVF rather than HNSW above the limit: on a small machine it builds in a minute where HNSW
    takes tens of minutes at a million vectors, it can remove vectors, and related lists of
    indexed trials come from precomputed neighbour lists anyway (see :mod:`similarity.neighbours`).
    8-bit codes rather than float32: a quarter of the memory (224 MB instead of 879 MB at 0.6M
    trials); the ranker re-scores its candidates with the stored field vectors, which refines the
    coarse search (``benchmarks/performance.md`` gives the related-list recall against exact).
    """
    from .faiss import FaissBackend
    from .numpy import NumpyBackend

    if name == "auto":
        name = "flat" if n_vectors <= EXACT_LIMIT else "ivf-sq8"
    if name == "numpy":
        return NumpyBackend(dim)
    if name in ("flat", "hnsw", "ivf", "ivf-sq8"):
        return FaissBackend(dim, kind=name)
    raise InvalidParameter(f"unknown backend {name!r}; allowed: auto, numpy, flat, hnsw, ivf, ivf-sq8")


def load_backend(path: str | Path) -> VectorBackend:
    """Load the backend saved in directory ``path``."""
    from .faiss import FaissBackend
    from .numpy import NumpyBackend

    path = Path(path)
    try:
        meta = json.loads((path / "backend.json").read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"{path}: no readable backend.json ({exc})") from None
    from ..neighbours import NeighbourLists

    classes = {"numpy": NumpyBackend, "flat": FaissBackend, "hnsw": FaissBackend, "ivf": FaissBackend,
               "ivf-sq8": FaissBackend}
    if meta.get("name") not in classes:
        raise IndexMismatch(f"{path}: unknown backend {meta.get('name')!r}")
    backend = classes[meta["name"]]._load(path, int(meta["dim"]))
    backend.neighbours = NeighbourLists.load(path)
    return backend
