"""Reaching the database: index URLs, connections with one-line errors, a small pool, ``current``.

An index URL is a libpq URI, ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME`` (``postgres://``
too; a Unix socket as ``?host=/path/to/dir``). Every save writes its build into a new schema and
the one-row table ``related_trials.current`` names the schema readers load (see
:mod:`.writer`); this module reads that row.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import urllib.parse
from typing import Iterator

from ...exceptions import IndexNotFound, InvalidParameter, RelatedTrialsError

__all__ = ["is_index_url", "redact", "connect", "Connections", "current_build", "database_error", "CONTROL_SCHEMA",
           "CONNECT_TIMEOUT"]

logger = logging.getLogger(__name__)

SCHEMES = ("postgresql://", "postgres://")
CONTROL_SCHEMA = "related_trials"
"""The schema of the ``current`` pointer; builds live in schemas named ``rt_<build id>``."""
CONNECT_TIMEOUT = 10
"""Seconds a connection attempt may take before the server counts as unreachable."""
_SCHEMA_NAME = re.compile(r"rt_[0-9a-z_]{1,50}")


def is_index_url(location) -> bool:
    """Whether ``location`` (an ``--index`` value) names a PostgreSQL database, not a directory."""
    return isinstance(location, str) and location.strip().lower().startswith(SCHEMES)


# greedy up to the query: an unencoded @ or / in a password is masked too
_PASSWORD = re.compile(r"(://[^:/@?]*):([^?#]+)@")
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with its password (``USER:PASSWORD@`` or ``?password=``) replaced by ``***`` (for
    messages and logs)."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1:***@", url, count=1))


def _scrub(text: str, url: str) -> str:
    """``text`` (a libpq message about ``url``, which may quote the URL or part of it) with the
    password and its pieces masked."""
    found = [m.group(2) for m in [_PASSWORD.search(url)] if m] + [m.group(0).split("=", 1)[1] for m in
                                                                  _PASSWORD_PARAM.finditer(url)]
    text = redact(text)
    for password in found:
        for secret in {password, urllib.parse.unquote(password), *re.split(r"[/?#@:]", password)}:
            if len(secret) >= 2:
                text = text.replace(secret, "***")
    return text


def psycopg():
    """The psycopg module, or an install hint."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the extra being installed
        raise ImportError(
            "a postgresql:// index needs psycopg and pgvector: pip install 'related-trials[scale]'"
        ) from None
    return psycopg


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def database_error(exc: Exception, url: str, doing: str, other: type[RelatedTrialsError]) -> RelatedTrialsError:
    """A one-line error for a psycopg error ``exc`` raised while ``doing`` (e.g. "saving into") on
    ``url``: IndexNotFound where the server went away, else ``other``."""
    kind = IndexNotFound if isinstance(exc, psycopg().OperationalError) else other
    return kind(f"{doing} {redact(url)} failed: {_scrub(_first_line(exc), url)}")


def connect(url: str, *, autocommit: bool = True, register: bool = True):
    """A new connection to ``url``, with pgvector's types registered where the extension exists.

    Raises:
        InvalidParameter: ``url`` is not a valid PostgreSQL URL.
        IndexNotFound: the server cannot be reached, or refuses the login.
    """
    pg = psycopg()
    url = url.strip()
    try:
        pg.conninfo.conninfo_to_dict(url)
        urllib.parse.urlsplit(url).port  # noqa: B018 - libpq reads a bad port as a service name
    except (pg.ProgrammingError, ValueError) as exc:
        raise InvalidParameter(f"--index {redact(url)!r} is not a valid PostgreSQL URL ({_scrub(_first_line(exc), url)}); "
                               "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME") from None
    try:
        conn = pg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT,
                          application_name="related-trials")
    except pg.OperationalError as exc:
        raise IndexNotFound(f"cannot reach the PostgreSQL server of {redact(url)}: {_scrub(_first_line(exc), url)}") from None
    if register:
        register_vector(conn)
    return conn


def register_vector(conn) -> bool:
    """Register the ``vector`` / ``halfvec`` types on ``conn``; False where the extension is absent."""
    from pgvector.psycopg import register_vector as register

    try:
        register(conn)
    except psycopg().ProgrammingError:  # "vector type not found in the database"
        if not conn.autocommit:
            conn.rollback()
        return False
    return True


def check_schema(name: str) -> str:
    """``name`` if it is a build schema this package writes (it is put into SQL text)."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise InvalidParameter(f"not a build schema name: {name!r}")
    return name


def current_build(conn) -> str | None:
    """The schema ``related_trials.current`` names on ``conn``, or None (no index saved there yet)."""
    pg = psycopg()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT schema_name FROM {CONTROL_SCHEMA}.current")
            row = cur.fetchone()
    except pg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
        return None
    return row[0] if row else None


class Connections:
    """A few connections to one database shared by a loaded index's threads.

    Requests take a connection for one statement or transaction and give it back. At most
    ``size`` are opened (lazily); a connection that failed is closed and replaced on next use, so a
    restarted server is reconnected to.
    """

    def __init__(self, url: str, size: int = 4):
        if size < 1:
            raise InvalidParameter(f"size must be >= 1, got {size}")
        self.url = url
        self.size = size
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator:
        """A connection (autocommit) for the block; it goes back to the pool after, or is closed
        if the block failed on the connection itself."""
        conn = self._take()
        broken = False
        try:
            yield conn
        except psycopg().OperationalError:
            broken = True
            raise
        finally:
            if broken or conn.closed or self._closed:
                conn.close()
                self._idle.put(None)  # the slot stays: its next taker opens a new connection
            else:
                if conn.info.transaction_status != psycopg().pq.TransactionStatus.IDLE:
                    conn.rollback()
                self._idle.put(conn)

    def _take(self):
        with self._lock:
            can_open = self._opened < self.size and self._idle.empty()
            if can_open:
                self._opened += 1
        if can_open:
            try:
                return connect(self.url)
            except BaseException:
                with self._lock:
                    self._opened -= 1
                raise
        conn = self._idle.get()
        if conn is None:  # the slot of a broken connection
            try:
                return connect(self.url)
            except BaseException:
                self._idle.put(None)
                raise
        return conn

    def close(self) -> None:
        """Close the idle connections (those in use close when given back)."""
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            if conn is not None:
                conn.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
