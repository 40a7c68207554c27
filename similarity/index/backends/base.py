"""The vector-store interface: add / search / remove / save / load / count over unit vectors."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np

from ...exceptions import InvalidParameter

__all__ = ["BackendName", "VectorBackend"]

BackendName = Literal["auto", "numpy", "flat", "hnsw", "ivf", "ivf-sq8"]

class VectorBackend(ABC):
    """Inner-product search over unit vectors, each stored under an int64 id.

    ``neighbours`` optionally holds precomputed :class:`~similarity.index.neighbours.NeighbourLists`
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
