"""Running the app: in the foreground with uvicorn (``related-trials serve``), in a background
thread for tests (:func:`serve_in_thread`), or as a child process for load tests, soak tests and
screenshots (:func:`server_process`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

from ..exceptions import InvalidParameter
from .app import create_app

__all__ = ["RunningServer", "app_from_environment", "serve", "serve_in_thread", "server_process"]

STDERR_TAIL = 2000
"""Characters of a failed server's stderr quoted in the error."""


WORKER_READY_SECONDS = 300
"""How long a restarted worker may take to load its index and model before the restart is abandoned."""
CONFIG_ENV = "RELATED_TRIALS_SERVE_CONFIG"
"""How :func:`serve` hands the app's settings to its worker processes (JSON)."""


def serve(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          cors_origins: Sequence[str] = (), reload_token: str | None = None,
          watch_seconds: float | None = 2.0, workers: int | None = None, batch_rows: int = 1) -> None:
    """Serve the API and the widget with uvicorn until interrupted; SIGHUP reloads the index.

    Args are those of :func:`create_app`, and ``workers``: processes answering requests (default:
    the machine's cores). Each maps the same index files (the pages are shared), loads the model
    for posted documents, and follows ``CURRENT`` on its own (``watch_seconds``); with several,
    SIGHUP to the parent restarts them all on the current build, and ``POST /admin/reload`` reloads
    the worker that answers it, the others within ``watch_seconds``.
    """
    import uvicorn

    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise InvalidParameter(f"workers must be >= 1, got {workers}")
    if workers > 1 and not watch_seconds:
        raise InvalidParameter(f"{workers} workers follow a new build by watching CURRENT: give a watch interval, "
                               "or serve with one worker (--workers 1) to reload on SIGHUP or POST /admin/reload only")
    settings = {"index_dir": str(index_dir), "cors_origins": list(cors_origins), "reload_token": reload_token,
                "watch_seconds": watch_seconds, "batch_rows": batch_rows}
    app = create_app(**settings, reload_on_sighup=True)  # bad settings fail here, not in every worker
    if workers == 1:
        _one_thread_per_search()
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    os.environ[CONFIG_ENV] = json.dumps(settings)
    # A worker is ready once its index and model are loaded: give a restart (SIGHUP) that long.
    uvicorn.run("similarity.service.server:app_from_environment", factory=True, workers=workers, host=host,
                port=port, log_level="info", timeout_worker_healthcheck=WORKER_READY_SECONDS)


def app_from_environment():
    """The app of one worker process of :func:`serve` (settings from ``$RELATED_TRIALS_SERVE_CONFIG``)."""
    try:
        settings = json.loads(os.environ[CONFIG_ENV])
    except (KeyError, ValueError):
        raise InvalidParameter(f"${CONFIG_ENV} must hold the JSON settings that serve() writes") from None
    _one_thread_per_search()
    # Workers share the cores: one torch thread each, or their encoder calls fight over them (a
    # batch of documents on two threads while another worker does the same runs ~3x slower).
    import torch

    torch.set_num_threads(1)
    return create_app(**settings)


def _one_thread_per_search() -> None:
    # Requests already run in parallel (one thread each); OpenMP threads inside every single
    # search only contend with them: 1 thread more than halves the related list's latency.
    import faiss

    faiss.omp_set_num_threads(1)


@contextlib.contextmanager
def serve_in_thread(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                    **app_kwargs) -> Iterator[str]:
    """Run the server in a background thread (port 0: a free one); yields its base URL.

    For tests and scripts: the server starts before the block and stops after it.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(index_dir, **app_kwargs), host=host, port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="related-trials-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclasses.dataclass(frozen=True)
class RunningServer:
    """A server started by :func:`server_process`.

    Attributes:
        url: its base URL, ``http://HOST:PORT``.
        pid: its process id (to read its memory from ``/proc/PID/status``, say).
        process: the child process itself.
    """

    url: str
    pid: int
    process: subprocess.Popen


@contextlib.contextmanager
def server_process(
    index_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    startup_timeout: float = 180.0,
) -> Iterator[RunningServer]:
    """Run ``related-trials serve`` in a child process until the block ends; yields a :class:`RunningServer`.

    For load tests, soak tests and screenshots: the server runs in its own process, with its own
    interpreter lock and memory, as it does in production. It is started with this interpreter
    (``sys.executable -m similarity.cli serve``) and ``HF_HUB_OFFLINE=1``; the block starts once
    ``GET /health`` answers 200. After the block the server gets SIGTERM, then SIGKILL if it has
    not exited within 10 seconds.

    Args:
        index_dir: the index directory to serve (``--index``).
        host: the address to listen on.
        port: the port; 0 picks a free one just before the server starts.
        env: variables added to this process's environment for the server (a reload token, say).
        args: further ``serve`` options, such as ``("--watch", "0")``.
        startup_timeout: seconds to wait for the first 200 from ``/health``.

    Raises:
        InvalidParameter: ``startup_timeout`` is not positive.
        RuntimeError: the server exited before answering, or did not answer within
            ``startup_timeout``; the message ends with the last lines of its stderr.
    """
    import httpx

    if not startup_timeout > 0:
        raise InvalidParameter(f"startup_timeout must be > 0 seconds, got {startup_timeout!r}")
    port = port or _free_port(host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    command = [sys.executable, "-m", "similarity.cli", "serve", "--index", str(index_dir),
               "--host", host, "--port", str(port), *args]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with status {process.returncode} before answering "
                                       f"{url}/health; its stderr ends:\n{_tail(stderr)}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer {url}/health within {startup_timeout:g} s; "
                                       f"its stderr ends:\n{_tail(stderr)}")
                time.sleep(0.25)
            yield RunningServer(url=url, pid=process.pid, process=process)
        finally:
            _stop(process)


def _free_port(host: str) -> int:
    """A port free on ``host`` now (another process may take it before the server binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(stream: IO[bytes]) -> str:
    """The last :data:`STDERR_TAIL` characters written to ``stream``."""
    stream.flush()
    stream.seek(0)
    return stream.read().decode(errors="replace")[-STDERR_TAIL:].strip() or "(nothing)"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s; waits for the process either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
