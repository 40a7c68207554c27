"""Loading an index from PostgreSQL: the build ``related_trials.current`` names, read consistently.

A loaded index keeps in memory what the ranker re-scores with for every request, read once at
load: the field vectors, the compact columns the filters read, the structured and BM25 matrices,
the encoders, the neighbour lists and the stored related lists (a replica holds a *copy* of these
arrays; the database stays the source of truth and a replica keeps no state of its own). Trial
records are read from the ``trials`` table on demand (:class:`PgTrialStore`, with a cache), and
vector searches run in the database (:class:`~similarity.index.backends.pgvector.PgVectorBackend`).

The tables of the build are locked (``ACCESS SHARE``) in one transaction before they are read, so
a save that prunes old builds waits for the load to finish rather than dropping a table under it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
from typing import Any, Iterator

import joblib
import numpy as np
from scipy import sparse

from ...exceptions import IndexMismatch, IndexNotFound
from ...ingest import Trial
from ..backends.pgvector import PgVectorBackend
from ..manifest import Manifest
from ..neighbours import NeighbourLists
from ..quantized import store_field_vectors
from ..store import CACHE_SIZE, RecordStore
from ..stored_lists import StoredLists
from .binary_copy import decode_rows
from .connection import Connections, check_schema, connect, current_build, database_error, psycopg, redact

__all__ = ["PgBuild", "open_build", "PgTrialStore", "TABLES"]

logger = logging.getLogger(__name__)

TABLES = ("trials", "field_vectors", "trial_vectors", "lexical", "related_lists", "artifacts")
_BLOCK = 2000


class PgTrialStore(RecordStore):
    """The trials of a build, each read from ``<schema>.trials`` on first access (LRU cache)."""

    def __init__(self, connections: Connections, schema: str, count: int, *, cache_size: int = CACHE_SIZE):
        self.connections = connections
        self.schema = check_schema(schema)
        self._count = int(count)
        self._get = functools.lru_cache(maxsize=cache_size)(self._read)

    def _read(self, row: int) -> Trial:
        with self.connections.connection() as conn:
            found = conn.execute(f"SELECT record::text FROM {self.schema}.trials WHERE row = %s", (row,)).fetchone()
        if found is None:
            raise IndexMismatch(f"{self.schema}.trials has no row {row}")
        return Trial.from_dict(json.loads(found[0]))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Trial]:
        """Every record in row order, read in blocks (not cached)."""
        for start in range(0, self._count, _BLOCK):
            with self.connections.connection() as conn:
                records = conn.execute(f"SELECT record::text FROM {self.schema}.trials WHERE row >= %s AND row < %s "
                                       "ORDER BY row", (start, start + _BLOCK)).fetchall()
            yield from (Trial.from_dict(json.loads(r)) for (r,) in records)


@dataclasses.dataclass
class PgBuild:
    """One build of a database, its manifest read (call :meth:`parts` for the rest)."""

    url: str
    schema: str
    manifest: Manifest
    _conn: Any
    _artifacts: dict[str, bytes]

    def parts(self, *, pool_size: int = 4) -> dict[str, Any]:
        """The keyword arguments of :class:`~similarity.index.TrialIndex` (closes the load's connection)."""
        try:
            return self._parts(pool_size)
        except psycopg().Error as exc:
            raise database_error(exc, self.url, "loading the index from", IndexMismatch) from None
        finally:
            self.close()

    def close(self) -> None:
        if not self._conn.closed:
            try:
                self._conn.rollback()
            except psycopg().Error:  # a broken connection: closing is all there is to do
                pass
            self._conn.close()

    def _copy(self, query: str) -> bytes:
        with self._conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
            return b"".join(bytes(block) for block in copy)

    def _parts(self, pool_size: int) -> dict[str, Any]:
        m, s, a = self.manifest, self.schema, self._artifacts
        fields = list(m.config.text_fields)
        n, dim = m.count, m.dim
        columns = ", ".join(f'"{f}"' for f in fields)
        decoded = decode_rows(self._copy(f"SELECT {columns} FROM {s}.field_vectors ORDER BY row"),
                              [("halfvec", dim)] * len(fields))
        field_vectors = np.stack(decoded, axis=1).astype(np.float16) if n else np.zeros((0, len(fields), dim), np.float16)
        field_vectors = store_field_vectors(field_vectors, m.config.vectors)  # int8 builds: the same codes again
        rows, terms, weights = decode_rows(self._copy(
            f"SELECT l.row, u.term, u.weight FROM {s}.lexical l CROSS JOIN LATERAL "
            "unnest(l.terms, l.weights) WITH ORDINALITY AS u(term, weight, pos) ORDER BY l.row, u.pos"),
            [("int4", 1), ("int4", 1), ("float4", 1)])
        shape = tuple(int(v) for v in _npy(a["lexical_shape.npy"]))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))]).astype(np.int64)
        lexical = sparse.csr_matrix((weights.astype(np.float32), terms.astype(np.int32), indptr), shape=shape)
        with np.load(io.BytesIO(a["columns.npz"])) as saved:
            cols = {k: saved[k] for k in saved.files}
        encoders = joblib.load(io.BytesIO(a["encoders.joblib"]))
        connections = Connections(self.url, size=pool_size)
        backend = PgVectorBackend(dim, connections, s, self._scalar(f"SELECT count(*) FROM {s}.trial_vectors"))
        if "neighbours.npy" in a:
            backend.neighbours = NeighbourLists(_npy(a["neighbours.npy"]), method=a["neighbours.txt"].decode())
        return {
            "manifest": m,
            "trials": PgTrialStore(connections, s, self._scalar(f"SELECT count(*) FROM {s}.trials")),
            "field_vectors": field_vectors,
            "structured": sparse.load_npz(io.BytesIO(a["structured.npz"])).tocsr(),
            "structured_featurizer": encoders["structured"],
            "lexical": lexical,
            "lexical_vectorizer": encoders["lexical"],
            "backend": backend,
            "columns": cols,
            "lexical_norms": _npy(a["lexical_norms.npy"]),
            "related_lists": self._lists(),
        }

    def _scalar(self, query: str) -> int:
        return int(self._conn.execute(query).fetchone()[0])

    def _lists(self) -> StoredLists | None:
        if "lists.json" not in self._artifacts:
            return None
        meta = json.loads(self._artifacts["lists.json"])
        k = int(meta["k"])
        found = self._conn.execute(f"SELECT row, items, ends FROM {self.schema}.related_lists ORDER BY row").fetchall()
        if len(found) != self.manifest.count or any(row != i for i, (row, _, _) in enumerate(found)):
            raise IndexMismatch(f"{self.schema}.related_lists disagrees with the build; rebuild it")
        offsets = np.zeros((len(found), k + 1), dtype=np.int64)
        position = 0
        for row, items, ends in found:
            offsets[row, 0] = position
            offsets[row, 1:len(ends) + 1] = position + np.asarray(ends, dtype=np.int64)
            offsets[row, len(ends) + 1:] = position + (ends[-1] if ends else 0)
            position += len(items)
        data = np.frombuffer(b"".join(bytes(items) for _, items, _ in found), dtype=np.uint8)
        return StoredLists(data, offsets, meta["settings"])


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def open_build(url: str) -> PgBuild:
    """The current build of the database at ``url``: its tables locked for reading, its manifest read.

    Raises:
        InvalidParameter: ``url`` is not a PostgreSQL URL.
        IndexNotFound: the server cannot be reached, or holds no index.
        IndexMismatch: the build is of another format, or damaged.
    """
    pg = psycopg()
    conn = connect(url, autocommit=False)
    try:
        for _ in range(3):  # a save may drop the build between reading current and locking it
            schema = current_build(conn)
            if schema is None:
                raise IndexNotFound(f"no index in {redact(url)} (build one with: related-trials build SOURCE "
                                    f"--index {redact(url)})")
            check_schema(schema)
            try:
                conn.execute(f"LOCK TABLE {', '.join(f'{schema}.{t}' for t in TABLES)} IN ACCESS SHARE MODE")
            except (pg.errors.UndefinedTable, pg.errors.InvalidSchemaName):
                conn.rollback()
                continue
            if current_build(conn) != schema:  # switched while we waited for the locks
                conn.rollback()
                continue
            break
        else:
            raise IndexNotFound(f"{redact(url)}: the current build changed three times while loading; try again")
        artifacts = {name: bytes(data) for name, data in conn.execute(f"SELECT name, data FROM {schema}.artifacts")}
        if "manifest.json" not in artifacts:
            raise IndexMismatch(f"{redact(url)} schema {schema}: no manifest; rebuild it")
        try:
            manifest = Manifest.from_dict(json.loads(artifacts["manifest.json"]))
        except ValueError as exc:
            raise IndexMismatch(f"{redact(url)} schema {schema}: {exc}") from None
        return PgBuild(url, schema, manifest, conn, artifacts)
    except pg.Error as exc:
        conn.close()
        raise database_error(exc, url, "loading the index from", IndexMismatch) from None
    except BaseException:
        conn.close()
        raise
