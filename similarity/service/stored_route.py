"""The widget's request answered from stored lists, below the framework: a small ASGI middleware.

``GET /trials/{nct_id}/related`` with no filter (at most ``k`` in the query) is what every trial
page asks, and where the index stores the lists (``build --lists``) its answer is a slice of
bytes. Routing it through FastAPI (parameter parsing, dependencies, response validation) costs
several times the slice, so this middleware answers it directly: the same body, ``ETag`` and
``Cache-Control`` as the route, and a 304 for a matching ``If-None-Match``. Anything else — another
parameter, a ``k`` that is not an integer from 1 to the stored length, an unknown trial, lists made
by another ranker — goes on to the app unchanged, which answers it (or refuses it) as before.
"""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import parse_qsl, unquote

from .caching import etag_matches, etag_of
from .schemas import MAX_ID_CHARS, MAX_K
from .widget import CACHE_CONTROL

__all__ = ["StoredListsMiddleware"]

_PATH = re.compile(r"^/trials/([^/]{1,%d})/related$" % MAX_ID_CHARS)
DEFAULT_K = 5
"""The route's default ``k`` (``KParam = 5``)."""


class StoredListsMiddleware:
    """Answer unfiltered related lists of indexed trials from the stored lists.

    Args:
        app: the ASGI app to pass every other request to.
        ranker_of: ``ranker_of(scope_app)`` gives the ranker serving now (read once per request).
    """

    def __init__(self, app, ranker_of: Callable):
        self.app = app
        self.ranker_of = ranker_of

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            answered = await self._answer(scope, send)
            if answered:
                return
        await self.app(scope, receive, send)

    async def _answer(self, scope, send) -> bool:
        match = _PATH.match(scope["path"])
        if not match:
            return False
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if any(name != "k" for name, _ in query) or len(query) > 1:
            return False
        k = DEFAULT_K
        if query:
            value = query[0][1]
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_K):
                return False
            k = int(value)
        ranker = self.ranker_of(scope["app"])
        nct_id = unquote(match.group(1)).strip().upper()
        if nct_id not in ranker.index:
            return False
        stored = ranker.related_json(nct_id, k)
        if stored is None:
            return False
        etag = etag_of(ranker.index, scope["path"], query)
        headers = [(b"etag", etag.encode()), (b"cache-control", CACHE_CONTROL.encode())]
        if etag_matches(_header(scope, b"if-none-match"), etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return True
        body = b'{"nct_id":"' + nct_id.encode("ascii") + b'","related":[' + stored + b"]}"
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


def _header(scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower case), or None."""
    return next((value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name), None)
