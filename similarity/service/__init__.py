"""Service: the HTTP JSON API and the embeddable widget over a saved index.

:mod:`.app` is the FastAPI app factory and its API routes, :mod:`.schemas` what they take and
return, :mod:`.errors` how errors become status codes, :mod:`.widget` the widget and its demo page,
:mod:`.hotswap` the index a server holds and swaps when a rebuild lands, :mod:`.server` runs it
(in the foreground, in a thread, or as a child process for load tests and screenshots).
"""

from .app import RELOAD_TOKEN_ENV, create_app
from .errors import BodyTooLarge
from .hotswap import ServedIndex
from .server import RunningServer, serve, serve_in_thread, server_process

__all__ = [
    "BodyTooLarge",
    "RELOAD_TOKEN_ENV",
    "RunningServer",
    "ServedIndex",
    "create_app",
    "serve",
    "serve_in_thread",
    "server_process",
]
