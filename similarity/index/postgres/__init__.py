"""PostgreSQL + pgvector as an index store: ``--index postgresql://...`` wherever ``--index DIR`` goes.

:func:`save_build` writes an index into a new schema and switches ``related_trials.current`` to it
in the same transaction (:mod:`.writer`); :func:`open_build` reads the current one back
(:mod:`.reader`), its vectors searched in the database by
:class:`~similarity.index.backends.pgvector.PgVectorBackend`; :mod:`.embedded` starts a local
PostgreSQL from a data directory. Any PostgreSQL >= 14 with the ``vector`` extension (pgvector
>= 0.8 for iterative index scans) takes the same URL form. psycopg and pgvector are imported
when a URL is first used (``pip install 'related-trials[scale]'``).
"""

from .connection import CONTROL_SCHEMA, Connections, connect, current_build, is_index_url, redact
from .embedded import embedded_server, stop_embedded_server
from .reader import PgBuild, PgTrialStore, open_build
from .writer import save_build

__all__ = ["CONTROL_SCHEMA", "Connections", "PgBuild", "PgTrialStore", "connect", "current_build",
           "embedded_server", "is_index_url", "open_build", "redact", "save_build",
           "stop_embedded_server"]
