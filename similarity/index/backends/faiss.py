"""FAISS backends: exact ``IndexFlatIP`` for small corpora, IVF or HNSW for large ones."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ...exceptions import InvalidParameter
from .base import VectorBackend

__all__ = ["FaissBackend", "EXACT_FILTER_LIMIT"]

Kind = Literal["flat", "hnsw", "ivf", "ivf-sq8"]
KINDS = ("flat", "hnsw", "ivf", "ivf-sq8")

EXACT_FILTER_LIMIT = 20_000
"""An approximate index answers a filter allowing at most this many vectors by an exact scan of them."""


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("the FAISS backends need faiss-cpu: pip install faiss-cpu") from None
    return faiss


def default_n_lists(n_vectors: int) -> int:
    """IVF lists for ``n_vectors``: about ``4 sqrt(n)``, with at least 39 training points per list."""
    return int(max(1, min(4 * np.sqrt(max(n_vectors, 1)), n_vectors // 39)))


class FaissBackend(VectorBackend):
    """FAISS inner-product index behind an id map; filters run inside the search (IDSelector).

    Args:
        dim: vector dimension.
        kind: ``flat`` (exact), ``hnsw`` (graph, ``m`` links per node), ``ivf`` (inverted lists of
            float32 vectors) or ``ivf-sq8`` (inverted lists of 8-bit scalar-quantised vectors:
            a quarter of the memory).
        m: HNSW links per node.
        ef_search: HNSW search breadth; raised automatically for large ``k``.
        n_lists: IVF lists (default from the number of vectors first added).
        n_probe: IVF lists visited per query.
    """

    def __init__(self, dim: int, kind: Kind = "flat", m: int = 32, ef_search: int = 128,
                 n_lists: int | None = None, n_probe: int = 32):
        super().__init__(dim)
        if kind not in KINDS:
            raise InvalidParameter(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        faiss = _faiss()
        self.kind, self.m, self.ef_search = kind, m, ef_search
        self.n_lists, self.n_probe = n_lists, n_probe
        self.name = kind
        self._index = None
        if kind == "flat":
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            self._index = faiss.IndexIDMap2(inner)

    @property
    def approximate(self) -> bool:
        return self.kind != "flat"

    def _make_ivf(self, n_vectors: int):
        faiss = _faiss()
        n_lists = self.n_lists or default_n_lists(n_vectors)
        self.n_lists = n_lists
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.kind == "ivf":
            inner = faiss.IndexIVFFlat(quantizer, self.dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexIVFScalarQuantizer(
                quantizer, self.dim, n_lists, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        inner.own_fields = True
        quantizer.this.disown()  # the IVF index frees its quantizer
        inner.nprobe = self.n_probe
        return inner  # IVF stores ids itself; an id map over it would not survive remove_ids

    def add(self, vectors, ids):
        vectors = self._check(vectors)
        if self._index is None:  # IVF: trained on the first vectors added
            faiss = _faiss()
            index = self._make_ivf(len(vectors))
            sample = vectors
            if len(vectors) > 64 * self.n_lists:
                rng = np.random.default_rng(0)
                sample = vectors[rng.choice(len(vectors), 64 * self.n_lists, replace=False)]
            index.train(sample)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct by id, for filters
            self._index = index
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def _params(self, k: int):
        faiss = _faiss()
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        if self.kind in ("ivf", "ivf-sq8"):
            return faiss.SearchParametersIVF(nprobe=self.n_probe)
        return None

    def search(self, queries, k, *, allowed=None):
        faiss = _faiss()
        queries = self._check(queries)
        k = max(int(k), 1)
        if self._index is None:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if allowed is not None and self.approximate and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._exact_over(queries, k, np.asarray(allowed, dtype=np.int64))
        params = self._params(k)
        if allowed is not None:
            params = params or faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        scores, ids = self._index.search(queries, k, params=params)
        scores[ids < 0] = -np.inf
        if allowed is not None and self.approximate:
            # A filter can cut the HNSW graph or skip every probed IVF list: rows that came back
            # short are answered exactly over the allowed vectors.
            short = np.flatnonzero((ids >= 0).sum(axis=1) < min(k, len(allowed)))
            if len(short):
                scores[short], ids[short] = self._exact_over(queries[short], k, np.asarray(allowed, dtype=np.int64))
        return scores, ids

    def _exact_over(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        """Exact top ``k`` among the ``allowed`` ids (their stored, possibly quantised, vectors)."""
        faiss = _faiss()
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if self.kind in ("ivf", "ivf-sq8"):  # every list probed: exhaustive over the allowed ids
            params = faiss.SearchParametersIVF(nprobe=self.n_lists, sel=faiss.IDSelectorBatch(allowed))
            scores, ids = self._index.search(queries, k, params=params)
            scores[ids < 0] = -np.inf
            return scores, ids
        allowed = allowed[np.isin(allowed, faiss.vector_to_array(self._index.id_map))]
        if not len(allowed):
            return scores, ids
        vectors = self._index.reconstruct_batch(allowed)
        exact = queries @ vectors.T
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        ids[:, : top.shape[1]] = allowed[top]
        scores[:, : top.shape[1]] = np.take_along_axis(exact, top, axis=1)
        return scores, ids

    def remove(self, ids):
        faiss = _faiss()
        if self.kind == "hnsw":
            raise NotImplementedError("HNSW cannot remove vectors; rebuild the backend instead")
        if self._index is None:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.kind in ("ivf", "ivf-sq8"):  # the IVF id hashtable removes by an explicit array only
            return int(self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    @property
    def count(self):
        return 0 if self._index is None else int(self._index.ntotal)

    def _save(self, path: Path):
        faiss = _faiss()
        index = self._index if self._index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        faiss.write_index(index, str(path / "vectors.faiss"))

    @classmethod
    def _load(cls, path: Path, dim: int):
        faiss = _faiss()
        raw = faiss.read_index(str(path / "vectors.faiss"))
        index = faiss.downcast_index(raw)
        inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
        name = type(inner).__name__
        if "HNSW" in name:
            backend = cls(dim, kind="hnsw")
        elif "IVFScalarQuantizer" in name:
            backend = cls(dim, kind="ivf-sq8", n_lists=inner.nlist, n_probe=inner.nprobe)
        elif "IVF" in name:
            backend = cls(dim, kind="ivf", n_lists=inner.nlist, n_probe=inner.nprobe)
        else:
            backend = cls(dim, kind="flat")
        backend._index = index
        backend._owner = raw  # the object read_index returned owns the C++ index: keep it alive
        return backend
