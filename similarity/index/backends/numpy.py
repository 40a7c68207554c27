"""Exact search with NumPy: the reference the FAISS backends are tested against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import VectorBackend

__all__ = ["NumpyBackend"]


class NumpyBackend(VectorBackend):
    """Brute-force inner product over a dense matrix; exact, for tests and small corpora."""

    name = "numpy"

    def __init__(self, dim: int):
        super().__init__(dim)
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)

    def add(self, vectors, ids):
        vectors = self._check(vectors)
        ids = np.asarray(ids, dtype=np.int64)
        self._vectors = np.vstack([self._vectors, vectors])
        self._ids = np.concatenate([self._ids, ids])

    def search(self, queries, k, *, allowed=None):
        queries = self._check(queries)
        scores = queries @ self._vectors.T
        if allowed is not None:
            scores[:, ~np.isin(self._ids, np.asarray(allowed, dtype=np.int64))] = -np.inf
        k_eff = min(k, scores.shape[1])
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if k_eff == 0:
            return out_scores, out_ids
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k_eff]
        top_scores = np.take_along_axis(scores, top, axis=1)
        valid = np.isfinite(top_scores)
        out_scores[:, :k_eff] = np.where(valid, top_scores, -np.inf)
        out_ids[:, :k_eff] = np.where(valid, self._ids[top], -1)
        return out_scores, out_ids

    def remove(self, ids):
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int((~keep).sum())
        self._vectors, self._ids = self._vectors[keep], self._ids[keep]
        return removed

    @property
    def count(self):
        return len(self._ids)

    def _save(self, path: Path):
        np.save(path / "vectors.npy", self._vectors)
        np.save(path / "ids.npy", self._ids)

    @classmethod
    def _load(cls, path: Path, dim: int):
        backend = cls(dim)
        backend._vectors = np.load(path / "vectors.npy")
        backend._ids = np.load(path / "ids.npy")
        return backend
