"""pgvector backend: inner-product search in PostgreSQL, over a build's ``trial_vectors`` table.

Unfiltered searches walk the table's HNSW index (``ORDER BY embedding <#> q LIMIT k``). A filter
is a set of allowed rows, executed one of two ways:

- **exact** where it is selective (at most ``exact_filter_limit`` rows, as the FAISS backends
  do): the allowed rows are fetched by primary key and scored, ``ORDER BY`` over them alone
  (the subquery fence keeps the planner off the HNSW index), so the answer is exact;
- **iterative index scan** otherwise (pgvector >= 0.8): ``hnsw.iterative_scan = strict_order``
  keeps walking the graph past rows the ``WHERE row = ANY(...)`` rejects until ``k`` pass or
  ``hnsw.max_scan_tuples`` are visited. A row that comes back short is answered exactly.

Vectors are written by :mod:`similarity.index.postgres.writer` when an index is saved; a published
build is never changed, so :meth:`add` and :meth:`remove` refuse (an update saves a new build).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...exceptions import InvalidParameter
from .base import VectorBackend

__all__ = ["PgVectorBackend", "EXACT_FILTER_LIMIT", "MAX_EF_SEARCH"]

EXACT_FILTER_LIMIT = 20_000
"""A filter allowing at most this many rows is answered by an exact scan of them."""
MAX_EF_SEARCH = 1000
"""pgvector's largest ``hnsw.ef_search``."""


class PgVectorBackend(VectorBackend):
    """Search over ``<schema>.trial_vectors`` through a pool of connections.

    Args:
        dim: vector dimension.
        connections: a :class:`~similarity.index.postgres.connection.Connections` to the database.
        schema: the build's schema.
        count: rows in ``trial_vectors``.
        ef_search: HNSW search breadth (raised to ``k`` for larger ``k``, at most 1000).
        exact_filter_limit: filters allowing at most this many rows are answered exactly.
        max_scan_tuples: how far an iterative scan may walk before the row is answered exactly.
    """

    name = "pgvector"

    def __init__(self, dim: int, connections, schema: str, count: int, *, ef_search: int = 100,
                 exact_filter_limit: int = EXACT_FILTER_LIMIT, max_scan_tuples: int = 50_000):
        super().__init__(dim)
        from ..postgres.connection import check_schema

        if ef_search < 1:
            raise InvalidParameter(f"ef_search must be >= 1, got {ef_search}")
        self.connections = connections
        self.schema = check_schema(schema)
        self._count = int(count)
        self.ef_search = ef_search
        self.exact_filter_limit = exact_filter_limit
        self.max_scan_tuples = max_scan_tuples
        self.last_plan: str | None = None
        """How the last search ran: ``hnsw``, ``iterative``, ``exact`` or ``iterative+exact``."""

    @property
    def count(self) -> int:
        return self._count

    def search(self, queries, k, *, allowed=None):
        queries = self._check(queries)
        k = max(int(k), 1)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if allowed is not None:
            allowed = np.unique(np.asarray(allowed, dtype=np.int64))
            allowed = allowed[(allowed >= 0) & (allowed < self._count)]
            if not len(allowed):
                return scores, ids
        with self.connections.connection() as conn:
            for i, query in enumerate(queries):
                found = self._one(conn, query, k, allowed)
                ids[i, :len(found)] = [r for r, _ in found]
                scores[i, :len(found)] = [-d for _, d in found]
        return scores, ids

    def _one(self, conn, query: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        if allowed is not None and len(allowed) <= self.exact_filter_limit:
            self.last_plan = "exact"
            return self._exact(conn, query, k, allowed)
        ef = min(max(self.ef_search, k), MAX_EF_SEARCH)
        table = f"{self.schema}.trial_vectors"
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(f"SET LOCAL hnsw.ef_search = {ef}")
            # strict order: results come in exact distance order however far the scan goes
            cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cur.execute(f"SET LOCAL hnsw.max_scan_tuples = {int(self.max_scan_tuples)}")
            if allowed is None:
                cur.execute(f"SELECT row, embedding <#> %(q)s AS d FROM {table} ORDER BY d LIMIT %(k)s",
                            {"q": query, "k": k})
            else:
                # no seq or bitmap scan: the HNSW index with the filter, or nothing
                cur.execute("SET LOCAL enable_seqscan = off")
                cur.execute("SET LOCAL enable_bitmapscan = off")
                cur.execute(f"SELECT row, embedding <#> %(q)s AS d FROM {table} WHERE row = ANY(%(ids)s) "
                            "ORDER BY d LIMIT %(k)s", {"q": query, "ids": allowed.tolist(), "k": k})
            found = cur.fetchall()
        self.last_plan = "hnsw" if allowed is None else "iterative"
        if allowed is not None and len(found) < min(k, len(allowed)):
            self.last_plan = "iterative+exact"
            return self._exact(conn, query, k, allowed)
        return found

    def _exact(self, conn, query: np.ndarray, k: int, allowed: np.ndarray) -> list[tuple[int, float]]:
        """The exact top ``k`` among ``allowed`` rows (OFFSET 0 fences the subquery off the index)."""
        with conn.cursor() as cur:
            cur.execute(f"SELECT row, d FROM (SELECT row, embedding <#> %(q)s AS d FROM {self.schema}.trial_vectors "
                        "WHERE row = ANY(%(ids)s) OFFSET 0) AS allowed ORDER BY d, row LIMIT %(k)s",
                        {"q": query, "ids": allowed.tolist(), "k": k})
            return cur.fetchall()

    def add(self, vectors, ids):
        raise NotImplementedError("a build in PostgreSQL is never changed in place: save the index again "
                                  "(TrialIndex.save writes a new build and switches to it)")

    def remove(self, ids):
        raise NotImplementedError("a build in PostgreSQL is never changed in place: save the index again "
                                  "(TrialIndex.save writes a new build and switches to it)")

    def _save(self, path: Path):
        raise NotImplementedError("an index loaded from PostgreSQL is saved to PostgreSQL (a postgresql:// URL)")

    @classmethod
    def _load(cls, path: Path, dim: int):
        raise NotImplementedError("a pgvector backend is loaded from its database by TrialIndex.load(URL)")
