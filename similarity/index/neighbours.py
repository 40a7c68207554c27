"""Precomputed neighbour lists: the ``k`` nearest stored vectors of every stored vector.

A related list for an indexed trial starts with a vector search for its nearest trials. On a large
corpus that search dominates (an exact scan of 1M vectors takes ~100 ms); since indexed trials
only change at build time, their candidate lists are computed once there and a query becomes an
array lookup. Filtered queries, new documents and ``k`` beyond the stored lists still search.

Lists are computed with a backend's own batched search (exact for ``flat``: the lists are then
the rows a live search returns), or for large corpora with :func:`clustered_knn`, an all-pairs
k-NN that runs as dense matrix products over pairs of nearby clusters.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..exceptions import InvalidParameter
from ._files import NpyRows, save_npy

__all__ = ["NeighbourLists", "clustered_knn", "exact_knn"]

logger = logging.getLogger(__name__)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(k), (len(scores), 1))
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def exact_knn(vectors: np.ndarray, k: int, *, queries: np.ndarray | None = None, block: int = 2048,
              progress: bool = False) -> np.ndarray:
    """Exact ``(n, k)`` nearest rows of each row by inner product, itself excluded (-1 pads)."""
    from tqdm.auto import tqdm

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = vectors if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    n = len(vectors)
    out = np.full((n, k), -1, dtype=np.int32)
    for start in tqdm(range(0, n, block), desc="neighbours", unit="block", disable=not progress):
        stop = min(start + block, n)
        scores = queries[start:stop] @ vectors.T
        scores[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = _top_k(scores, k)
        out[start:stop, : top.shape[1]] = top
    return out


def clustered_knn(vectors: np.ndarray, k: int, *, n_lists: int | None = None, n_probe: int = 8,
                  seed: int = 0, progress: bool = False) -> np.ndarray:
    """Approximate ``(n, k)`` nearest rows of each row (itself excluded), for large corpora.

    An IVF search turned inside out: the vectors are clustered (spherical k-means) and each row
    picks its ``n_probe`` nearest centroids, as an IVF query would; then, cluster by cluster, every
    row that probes the cluster is scored against all its members in one matrix product, and the
    best ``k`` are merged into the row's running list. The dot products are those of ``n`` IVF
    searches, but done by BLAS over blocks instead of a memory-bound scan per query.
    """
    import faiss
    from tqdm.auto import tqdm

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    n_lists = n_lists or max(1, int(np.sqrt(n)))
    n_probe = min(n_probe, n_lists)
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(n, min(n, 64 * n_lists), replace=False)]
    kmeans = faiss.Kmeans(dim, n_lists, niter=10, spherical=True, seed=seed, verbose=False)
    kmeans.train(sample)
    _, probes = kmeans.index.search(vectors, n_probe)
    members_of = np.argsort(probes[:, 0], kind="stable")
    member_bounds = np.searchsorted(probes[members_of, 0], np.arange(n_lists + 1))
    flat = probes.ravel()
    probers_of = np.argsort(flat, kind="stable") // n_probe
    prober_bounds = np.searchsorted(flat[np.argsort(flat, kind="stable")], np.arange(n_lists + 1))
    best_ids = np.full((n, k), -1, dtype=np.int32)
    best = np.full((n, k), -np.inf, dtype=np.float32)
    for c in tqdm(range(n_lists), desc="neighbours", unit="cluster", disable=not progress):
        members = members_of[member_bounds[c] : member_bounds[c + 1]]
        rows = probers_of[prober_bounds[c] : prober_bounds[c + 1]]
        if not len(members) or not len(rows):
            continue
        # one more than k: a row that is a member finds itself, and drops it
        found, at = faiss.knn(vectors[rows], vectors[members], min(k + 1, len(members)), metric=faiss.METRIC_INNER_PRODUCT)
        ids = np.where(at >= 0, members[np.maximum(at, 0)], -1)
        found[(ids == rows[:, None]) | (at < 0)] = -np.inf
        merged_ids = np.concatenate([best_ids[rows], ids.astype(np.int32)], axis=1)
        merged = np.concatenate([best[rows], found], axis=1)
        keep = np.argpartition(-merged, k - 1, axis=1)[:, :k]
        best_ids[rows] = np.take_along_axis(merged_ids, keep, axis=1)
        best[rows] = np.take_along_axis(merged, keep, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    best_ids = np.take_along_axis(best_ids, order, axis=1)
    best = np.take_along_axis(best, order, axis=1)
    best_ids[~np.isfinite(best)] = -1
    return best_ids


class NeighbourLists:
    """The ``k`` nearest stored rows of each stored row, best first (``-1`` pads short lists).

    Args:
        ids: ``(n, k)`` int32 array; row ``i`` lists the neighbours of stored id ``i``.
        method: how the lists were computed (``search:<backend>``, ``exact`` or ``clustered``).
    """

    def __init__(self, ids: "np.ndarray | NpyRows", method: str = "exact"):
        ids = ids if isinstance(ids, NpyRows) else np.asarray(ids)
        if ids.ndim != 2:
            raise InvalidParameter(f"neighbour ids must be a 2-D array, got shape {ids.shape}")
        self.ids = ids
        self.method = method

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def rows(self, row: int, n: int) -> np.ndarray:
        """The first ``n`` neighbours of ``row`` (fewer when the list is padded)."""
        if n > self.k:
            raise InvalidParameter(f"only {self.k} neighbours are stored, asked for {n}")
        out = np.asarray(self.ids[row, :n], dtype=np.int64)
        return out[out >= 0]

    @classmethod
    def compute(cls, backend, queries: np.ndarray, k: int, *, block: int = 2048,
                progress: bool = False) -> "NeighbourLists":
        """Lists from ``backend``'s own search: row ``i`` searched with ``queries[i]``, itself dropped.

        For an exact backend these are exactly the candidates a live search returns.
        """
        from tqdm.auto import tqdm

        if k < 1:
            raise InvalidParameter(f"k must be >= 1, got {k}")
        n = len(queries)
        out = np.full((n, k), -1, dtype=np.int32)
        for start in tqdm(range(0, n, block), desc="neighbours", unit="block", disable=not progress):
            stop = min(start + block, n)
            _, ids = backend.search(queries[start:stop], k + 1)
            for i, row in enumerate(ids):
                row = row[(row >= 0) & (row != start + i)][:k]
                out[start + i, : len(row)] = row
        return cls(out, method=f"search:{backend.name}")

    def save(self, path: str | Path) -> None:
        ids = self.ids if isinstance(self.ids, NpyRows) and self.ids.dtype == np.int32 else np.asarray(self.ids, np.int32)
        save_npy(Path(path) / "neighbours.npy", ids)
        (Path(path) / "neighbours.txt").write_text(self.method)

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> "NeighbourLists | None":
        """The lists saved in directory ``path``, or None when there are none; ``mmap``: a list read
        from the file when asked for (else all in memory)."""
        path = Path(path)
        if not (path / "neighbours.npy").exists():
            return None
        method = (path / "neighbours.txt").read_text().strip() if (path / "neighbours.txt").exists() else "exact"
        return cls(NpyRows(path / "neighbours.npy") if mmap else np.load(path / "neighbours.npy"), method=method)
