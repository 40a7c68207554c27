"""FAISS backends: exact ``IndexFlatIP`` for small corpora, HNSW for large ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..exceptions import InvalidParameter
from .base import VectorBackend

__all__ = ["FaissBackend"]


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("the FAISS backends need faiss-cpu: pip install faiss-cpu") from None
    return faiss


class FaissBackend(VectorBackend):
    """FAISS inner-product index behind an id map; filters run inside the search (IDSelector).

    Args:
        dim: vector dimension.
        kind: ``flat`` (exact) or ``hnsw`` (approximate, ``m`` links per node).
        m: HNSW links per node.
        ef_search: HNSW search breadth; raised automatically for large ``k``.
    """

    def __init__(self, dim: int, kind: Literal["flat", "hnsw"] = "flat", m: int = 32, ef_search: int = 128):
        super().__init__(dim)
        if kind not in ("flat", "hnsw"):
            raise InvalidParameter(f"kind must be 'flat' or 'hnsw', got {kind!r}")
        faiss = _faiss()
        self.kind, self.m, self.ef_search = kind, m, ef_search
        self.name = kind
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
        self._index = faiss.IndexIDMap2(inner)

    def add(self, vectors, ids):
        self._index.add_with_ids(self._check(vectors), np.asarray(ids, dtype=np.int64))

    def search(self, queries, k, *, allowed=None):
        faiss = _faiss()
        queries = self._check(queries)
        k = max(int(k), 1)
        params = None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            params = params or faiss.SearchParameters()
            params.sel = selector
        scores, ids = self._index.search(queries, k, params=params)
        scores[ids < 0] = -np.inf
        if allowed is not None and self.kind == "hnsw":
            # A selective filter can cut the HNSW graph into pieces the walk never reaches:
            # rows that came back short are answered exactly over the allowed vectors.
            expected = min(k, len(allowed))
            short = np.flatnonzero((ids >= 0).sum(axis=1) < expected)
            if len(short):
                allowed = np.asarray(allowed, dtype=np.int64)
                vectors = np.stack([self._index.reconstruct(int(i)) for i in allowed])
                exact = queries[short] @ vectors.T
                top = np.argsort(-exact, axis=1)[:, :expected]
                ids[short] = -1
                scores[short] = -np.inf
                ids[short, :expected] = allowed[top]
                scores[short, :expected] = np.take_along_axis(exact, top, axis=1)
        return scores, ids

    def remove(self, ids):
        faiss = _faiss()
        if self.kind == "hnsw":
            raise NotImplementedError("HNSW cannot remove vectors; rebuild the backend instead")
        return int(self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))))

    @property
    def count(self):
        return int(self._index.ntotal)

    def _save(self, path: Path):
        _faiss().write_index(self._index, str(path / "vectors.faiss"))

    @classmethod
    def _load(cls, path: Path, dim: int):
        faiss = _faiss()
        index = faiss.read_index(str(path / "vectors.faiss"))
        kind = "hnsw" if "HNSW" in type(faiss.downcast_index(index.index)).__name__ else "flat"
        backend = cls(dim, kind=kind)
        backend._index = index
        return backend
