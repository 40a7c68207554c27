"""Saving an index into PostgreSQL: a new schema per build, made current in the same transaction.

:func:`save_build` writes every part of a :class:`~similarity.index.TrialIndex` into a fresh schema
``rt_<stamp>_<random>`` and, in the **same transaction**, points the one-row table
``related_trials.current`` at it. Readers load the schema that row names at the moment they read
it (MVCC): until the commit they see the previous build and nothing of the new schema; after it,
the whole new build. A save that dies rolls back with no trace. Saves are serialised by an
advisory lock. After the commit, build schemas other than the new one and the one it replaced
are dropped (a replica that has not switched yet keeps reading the previous one).

Tables of a build schema (row ``i`` of every table is the index's row ``i``):

- ``trials``: ``row``, ``nct_id``, ``record`` (the trial as ``jsonb``) and its filterable
  attributes as columns (``status``, ``study_type``, ``phases``, ``intervention_types``, ``sex``,
  ``min_age``, ``max_age``, ``start_date``, ``countries``, ``lead_sponsor``) for SQL of one's own;
- ``field_vectors``: ``row`` and one ``halfvec(d)`` column per embedded text field;
- ``trial_vectors``: ``row`` and ``embedding vector(D)``, the weighted unit vector the backend
  searches, under an HNSW index (``vector_ip_ops``);
- ``lexical``: ``row``, ``terms int4[]``, ``weights float4[]`` (the BM25 row);
- ``related_lists``: ``row``, ``items bytea`` (the stored list's JSON items end to end), ``ends int4[]``;
- ``artifacts``: ``name``, ``data bytea``: the manifest, the fitted encoders, the compact columns,
  the structured matrix, the neighbour lists and the stored lists' settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import secrets
from typing import Any

import joblib
import numpy as np
from scipy import sparse

from ...exceptions import InvalidParameter
from ...ingest.trial import age_in_years, date_ordinal
from .binary_copy import encode_rows
from .connection import CONTROL_SCHEMA, _first_line, connect, database_error, psycopg, redact

__all__ = ["save_build", "save_vectors", "prune", "HNSW_M", "HNSW_EF_CONSTRUCTION", "KEEP"]

logger = logging.getLogger(__name__)

HNSW_M = 16
"""HNSW links per node (pgvector's default)."""
HNSW_EF_CONSTRUCTION = 64
"""HNSW build breadth (pgvector's default)."""
KEEP = 2
"""Build schemas kept after a save: the new one and the one it replaced."""
SCHEMA_PATTERN = r"^rt_[0-9]{8}t[0-9]{6}_[0-9a-f]{6}$"
"""The names :func:`new_schema_name` gives (and the only schemas :func:`prune` drops)."""
_LOCK_KEY = 0x72656C74  # "relt": the advisory lock that serialises saves on one database
_BLOCK = 65_536


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()


def _artifacts(index, manifest: dict[str, Any]) -> dict[str, bytes]:
    columns, structured = io.BytesIO(), io.BytesIO()
    np.savez(columns, **index.columns)
    sparse.save_npz(structured, index.structured.tocsr())
    encoders = io.BytesIO()
    joblib.dump({"structured": index.structured_featurizer, "lexical": index.lexical_vectorizer}, encoders)
    out = {
        "manifest.json": json.dumps(manifest, indent=2).encode(),
        "encoders.joblib": encoders.getvalue(),
        "columns.npz": columns.getvalue(),
        "structured.npz": structured.getvalue(),
        "lexical_shape.npy": _npy(np.asarray(index.lexical.shape, dtype=np.int64)),
        "lexical_norms.npy": _npy(np.asarray(index.lexical_norms, dtype=np.float32)),
    }
    neighbours = index.backend.neighbours
    if neighbours is not None:
        out["neighbours.npy"] = _npy(np.asarray(neighbours.ids, dtype=np.int32))
        out["neighbours.txt"] = neighbours.method.encode()
    if index.related_lists is not None:
        lists = index.related_lists
        out["lists.json"] = json.dumps({"k": lists.k, "settings": lists.settings}).encode()
    return out


def _trial_row(row: int, trial) -> tuple:
    record = trial.to_dict()
    day = date_ordinal(trial.start_date) if trial.start_date else None
    return (
        row, trial.nct_id, json.dumps(record, ensure_ascii=False),
        trial.overall_status.value if trial.overall_status else None,
        trial.study_type.value if trial.study_type else None,
        [p.value for p in trial.phases or ()],
        sorted({i.type.value for i in trial.interventions or () if i.type is not None}),
        trial.gender, age_in_years(trial.minimum_age), age_in_years(trial.maximum_age),
        dt.date.fromordinal(day) if day else None,
        list(dict.fromkeys(trial.countries or ())), trial.lead_sponsor,
    )


def _create_tables(cur, schema: str, fields: tuple[str, ...], dim: int, trial_dim: int) -> None:
    from psycopg import sql

    s = sql.Identifier(schema)
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    cur.execute(sql.SQL(
        "CREATE TABLE {}.trials (row int4 PRIMARY KEY, nct_id text NOT NULL UNIQUE, record jsonb NOT NULL, "
        "status text, study_type text, phases text[], intervention_types text[], sex text, min_age real, "
        "max_age real, start_date date, countries text[], lead_sponsor text)").format(s))
    columns = sql.SQL(", ").join(sql.SQL("{} halfvec({})").format(sql.Identifier(f), sql.Literal(dim)) for f in fields)
    cur.execute(sql.SQL("CREATE TABLE {}.field_vectors (row int4 PRIMARY KEY, {})").format(s, columns))
    cur.execute(sql.SQL("CREATE TABLE {}.trial_vectors (row int4 PRIMARY KEY, embedding vector({}) NOT NULL)")
                .format(s, sql.Literal(trial_dim)))
    cur.execute(sql.SQL("CREATE TABLE {}.lexical (row int4 PRIMARY KEY, terms int4[] NOT NULL, "
                        "weights float4[] NOT NULL)").format(s))
    cur.execute(sql.SQL("CREATE TABLE {}.related_lists (row int4 PRIMARY KEY, items bytea NOT NULL, "
                        "ends int4[] NOT NULL)").format(s))
    cur.execute(sql.SQL("CREATE TABLE {}.artifacts (name text PRIMARY KEY, data bytea NOT NULL)").format(s))


def write_vectors(cur, schema: str, table: str, columns: list[str], kinds: list[str], arrays: list[np.ndarray],
                  rows: np.ndarray) -> None:
    """COPY fixed-width rows (``row`` then ``columns``) into ``schema.table`` in blocks."""
    from psycopg import sql

    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(schema), sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, ["row", *columns])))
    for start in range(0, len(rows), _BLOCK):
        stop = min(start + _BLOCK, len(rows))
        block = [("int4", rows[start:stop])] + [(k, a[start:stop]) for k, a in zip(kinds, arrays)]
        with cur.copy(statement) as copy:
            copy.write(encode_rows(block))


def create_hnsw(cur, schema: str, n: int, dim: int, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> None:
    """The HNSW index on ``schema.trial_vectors`` (inner product), with memory for the whole graph."""
    from psycopg import sql

    # pgvector builds fastest with the graph in maintenance_work_mem: vectors plus links
    need_mb = int(n * (dim * 4 + m * 2 * 8 + 64) * 1.3 / 2**20) + 64
    cur.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{min(need_mb, 8192)}MB")))
    cur.execute(sql.SQL("CREATE INDEX ON {}.trial_vectors USING hnsw (embedding vector_ip_ops) "
                        "WITH (m = {}, ef_construction = {})").format(
        sql.Identifier(schema), sql.Literal(int(m)), sql.Literal(int(ef_construction))))


def ensure_control(cur) -> None:
    """The ``vector`` extension and the ``related_trials.current`` table (call under the save lock)."""
    cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {CONTROL_SCHEMA}.current (only_row boolean PRIMARY KEY DEFAULT true "
                "CHECK (only_row), schema_name text NOT NULL, build_id text NOT NULL, "
                "switched_at timestamptz NOT NULL)")


def switch_to(cur, schema: str) -> str | None:
    """Point ``current`` at ``schema`` (in the caller's transaction); returns the schema it named."""
    cur.execute(f"SELECT schema_name FROM {CONTROL_SCHEMA}.current FOR UPDATE")
    found = cur.fetchone()
    cur.execute(f"INSERT INTO {CONTROL_SCHEMA}.current (only_row, schema_name, build_id, switched_at) "
                "VALUES (true, %s, %s, clock_timestamp()) ON CONFLICT (only_row) DO UPDATE SET "
                "schema_name = EXCLUDED.schema_name, build_id = EXCLUDED.build_id, switched_at = EXCLUDED.switched_at",
                (schema, schema.removeprefix("rt_")))
    return found[0] if found else None


def new_schema_name() -> str:
    """``rt_<UTC stamp>_<random>``: sortable by time, unique across concurrent saves."""
    return f"rt_{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dt%H%M%S')}_{secrets.token_hex(3)}"


def save_build(index, url: str, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """Write ``index`` into a new schema of the database at ``url`` and make it current, atomically.

    Returns the new schema's name (the build's name). See the module's docstring for the tables.
    """
    from psycopg import sql

    if index.related_lists is not None and len(index.related_lists) != len(index):
        raise InvalidParameter(f"the stored related lists hold {len(index.related_lists)} rows, the index {len(index)}")
    fields = tuple(index.config.text_fields)
    n, dim = len(index), int(index.field_vectors.shape[2])
    manifest = index.manifest.to_dict()
    manifest["backend"] = "pgvector"
    schema = new_schema_name()
    rows = np.arange(n, dtype=np.int32)
    pg = psycopg()
    conn = connect(url, autocommit=False, register=False)
    try:
        with _save_transaction(conn) as cur:
            _create_tables(cur, schema, fields, dim, dim)
            s = sql.Identifier(schema)
            with cur.copy(sql.SQL(
                    "COPY {}.trials (row, nct_id, record, status, study_type, phases, intervention_types, sex, "
                    "min_age, max_age, start_date, countries, lead_sponsor) FROM STDIN").format(s)) as copy:
                for row, trial in enumerate(index.trials):
                    copy.write_row(_trial_row(row, trial))
            field_vectors = np.asarray(index.field_vectors)
            write_vectors(cur, schema, "field_vectors", list(fields), ["halfvec"] * len(fields),
                          [field_vectors[:, j, :] for j in range(len(fields))], rows)
            vectors = np.concatenate([index.trial_vectors(field_vectors[start:start + _BLOCK])
                                      for start in range(0, n, _BLOCK)])
            write_vectors(cur, schema, "trial_vectors", ["embedding"], ["vector"], [vectors], rows)
            lexical = index.lexical.tocsr()
            with cur.copy(sql.SQL("COPY {}.lexical (row, terms, weights) FROM STDIN").format(s)) as copy:
                for row in range(n):
                    a, b = lexical.indptr[row], lexical.indptr[row + 1]
                    copy.write_row((row, lexical.indices[a:b].tolist(), lexical.data[a:b].tolist()))
            if index.related_lists is not None:
                _write_lists(cur, schema, index.related_lists)
            with cur.copy(sql.SQL("COPY {}.artifacts (name, data) FROM STDIN").format(s)) as copy:
                for name, data in _artifacts(index, manifest).items():
                    copy.write_row((name, data))
            create_hnsw(cur, schema, n, dim, m=m, ef_construction=ef_construction)
            cur.execute(sql.SQL("ANALYZE {}.trial_vectors").format(s))
            cur.execute(sql.SQL("ANALYZE {}.trials").format(s))
            previous = switch_to(cur, schema)
    except pg.Error as exc:  # rolled back: nothing of the new build is left, the current one stays
        conn.close()
        raise database_error(exc, url, "saving the index into", InvalidParameter) from None
    try:
        logger.info("saved %d trials into schema %s of %s (replaced %s)", n, schema, redact(url), previous)
        prune(conn, keep={schema, previous})
    except pg.Error as exc:  # the new build is saved and current: older ones are dropped by a later save
        logger.warning("saved build %s into %s, but dropping older builds failed: %s", schema, redact(url),
                       _first_line(exc))
    finally:
        conn.close()
    return schema


@contextlib.contextmanager
def _save_transaction(conn):
    """The cursor of one save's transaction: saves serialised by an advisory lock, the control
    schema in place; committed on leaving, rolled back on an error."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        ensure_control(cur)
        yield cur


def _write_lists(cur, schema: str, lists) -> None:
    from psycopg import sql

    with cur.copy(sql.SQL("COPY {}.related_lists (row, items, ends) FROM STDIN").format(sql.Identifier(schema))) as copy:
        for row in range(len(lists)):
            copy.write_row((row, *lists.row_bytes(row)))


def prune(conn, keep: set[str | None]) -> list[str]:
    """Drop build schemas not in ``keep``; one that a reader still holds is left for the next save."""
    pg = psycopg()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ %s ORDER BY nspname", (SCHEMA_PATTERN,))
        old = [name for (name,) in cur.fetchall() if name not in keep]
        dropped = []
        cur.execute("SET lock_timeout = '5s'")
        for name in old:
            try:
                cur.execute(pg.sql.SQL("DROP SCHEMA {} CASCADE").format(pg.sql.Identifier(name)))
                dropped.append(name)
            except pg.errors.LockNotAvailable:
                logger.info("build schema %s is still being read; it is dropped by a later save", name)
    return dropped


def save_vectors(url: str, vectors: np.ndarray, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> str:
    """Only a ``trial_vectors`` table of ``vectors`` (row ``i`` = ``vectors[i]``) with its HNSW index,
    in a new schema that does not become current: for benchmarks and backend tests of
    :class:`~similarity.index.backends.pgvector.PgVectorBackend`. Returns the schema."""
    from psycopg import sql

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    schema = new_schema_name()
    conn = connect(url, autocommit=False, register=False)
    try:
        with _save_transaction(conn) as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            cur.execute(sql.SQL("CREATE TABLE {}.trial_vectors (row int4 PRIMARY KEY, embedding vector({}) NOT NULL)")
                        .format(sql.Identifier(schema), sql.Literal(vectors.shape[1])))
            write_vectors(cur, schema, "trial_vectors", ["embedding"], ["vector"], [vectors],
                          np.arange(len(vectors), dtype=np.int32))
            create_hnsw(cur, schema, len(vectors), vectors.shape[1], m=m, ef_construction=ef_construction)
            cur.execute(sql.SQL("ANALYZE {}.trial_vectors").format(sql.Identifier(schema)))
    finally:
        conn.close()
    return schema
