"""Running the app: in the foreground with uvicorn (``related-trials serve``), or in a background
thread for tests and scripts (:func:`serve_in_thread`)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from .app import create_app

__all__ = ["serve", "serve_in_thread"]


def serve(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          cors_origins: Sequence[str] = (), reload_token: str | None = None,
          watch_seconds: float | None = 2.0) -> None:
    """Serve the API and the widget with uvicorn until interrupted; SIGHUP reloads the index.

    Args are those of :func:`create_app`.
    """
    import faiss
    import uvicorn

    # Requests already run in parallel (one thread each); OpenMP threads inside every single
    # search only contend with them: 1 thread more than halves the related list's latency.
    faiss.omp_set_num_threads(1)
    app = create_app(index_dir, cors_origins=cors_origins, reload_token=reload_token,
                     watch_seconds=watch_seconds, reload_on_sighup=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


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
