"""The HTTP JSON API and the embeddable widget, served with FastAPI and uvicorn.

    GET  /trials/{nct_id}/related   related list of an indexed trial (k, aspect, status, phase, ... filters)
    POST /related                   related list of a trial document sent in the body
    GET  /search?q=TEXT             trials most related to a free-text query (the same filters)
    GET  /trials/{nct_id}           the stored trial's summary fields
    GET  /health                    liveness, the index served (build, fingerprint) and reloads
    POST /admin/reload              load the build ``CURRENT`` names now (bearer token; off without one)
    GET  /widget.js                 the ``<related-trials>`` custom element
    GET  /demo/{nct_id}             a registry-like page with the widget under it

The index (and the sentence model, for posted documents) load in the lifespan into a
:class:`~similarity.service.hotswap.ServedIndex` on ``app.state.served``; a rebuilt index is swapped in
whole (on ``POST /admin/reload``, SIGHUP, or a poll of ``CURRENT``), and every request answers
from the ranker it read when it started. Package errors become JSON ``{"detail": ...}``
responses in one place, :func:`~similarity.service.errors.install_error_handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Sequence

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from ..exceptions import InvalidParameter
from ..index import TrialIndex
from ..ingest import Trial, trial_from_document
from ..ingest.document_schema import DOCUMENT_SCHEMA
from ..ranking import Ranker
from ..ranking.text_query import check_query_text
from .errors import install_error_handlers, read_json
from .hotswap import ServedIndex
from .schemas import (
    BEARER,
    AspectParam,
    ErrorOut,
    FilterQuery,
    Health,
    KParam,
    NctId,
    QueryText,
    RelatedList,
    ReloadOut,
    SearchList,
    TrialOut,
)
from .caching import etag_matches, etag_of
from .stored_route import StoredListsMiddleware
from .widget import CACHE_CONTROL, REGISTRY_URL, add_widget_routes, normalise_id

__all__ = ["create_app", "RELOAD_TOKEN_ENV"]

logger = logging.getLogger(__name__)

RELOAD_TOKEN_ENV = "RELATED_TRIALS_RELOAD_TOKEN"
MIN_TOKEN_CHARS = 16

_ERRORS = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_NOT_MODIFIED = {304: {"description": "Not Modified: If-None-Match named the current ETag"}}


def _etag(index: TrialIndex, request: Request) -> str:
    """An entity tag for this index build and this request's path and (sorted) query."""
    return etag_of(index, request.url.path, request.query_params.multi_items())


def _not_modified(request: Request, etag: str) -> Response | None:
    """A 304 when the client's ``If-None-Match`` already names ``etag``."""
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    return None


def _index_info(index: TrialIndex) -> dict[str, Any]:
    m = index.manifest
    info = {"model": m.model, "count": m.count, "built_at": m.built_at, "fingerprint": m.fingerprint, "backend": m.backend}
    return {**info, "build": index.build}


def _refuse_token(credentials: HTTPAuthorizationCredentials | None, token: str) -> JSONResponse | None:
    """401 without a bearer token, 403 with another one than ``token``; None when it matches."""
    given = credentials.credentials.strip() if credentials is not None else ""
    if not given:
        return JSONResponse({"detail": "send the reload token as 'Authorization: Bearer <token>'"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JSONResponse({"detail": "wrong reload token"}, status_code=403)
    return None


def _trial_out(trial: Trial) -> dict[str, Any]:
    record = trial.to_dict()
    keep = {k: record[k] for k in TrialOut.model_fields if k in record}
    return {**keep, "title": trial.title, "status": record["overall_status"],
            "url": REGISTRY_URL.format(nct_id=trial.nct_id)}



# ------------------------------------------------------------------ the app
def create_app(
    index_dir: str | Path,
    *,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    reload_token: str | None = None,
    watch_seconds: float | None = None,
    reload_on_sighup: bool = False,
    batch_rows: int = 1,
) -> FastAPI:
    """The FastAPI app over the index in ``index_dir`` (loaded at start-up, not here).

    Args:
        index_dir: an index directory written by ``related-trials build``, or a PostgreSQL URL.
        cors_origins: origins allowed to call the API from a browser (``"*"`` for any).
        max_body_bytes: the largest trial document ``POST /related`` accepts (413 above).
        reload_token: the bearer token of ``POST /admin/reload`` (at least 16 characters);
            ``None`` turns the endpoint off (404).
        watch_seconds: poll ``CURRENT`` this often and swap in a new build (``None``: no poll).
        reload_on_sighup: reload on SIGHUP (only where the server runs in the main thread).
        batch_rows: embed the documents of concurrent ``POST /related`` and search requests in one
            encoder call, up to this many (:meth:`Ranker.batch_documents`; default 1: each alone, which
            measured faster on 2 CPU cores, ``benchmarks/api.md``).
    """
    if max_body_bytes < 1:
        raise InvalidParameter(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if reload_token is not None and len(reload_token.strip()) < MIN_TOKEN_CHARS:
        raise InvalidParameter(
            f"reload_token must be at least {MIN_TOKEN_CHARS} characters, got {len(reload_token.strip())}"
        )
    if watch_seconds is not None and watch_seconds <= 0:
        raise InvalidParameter(f"watch_seconds must be > 0 or None, got {watch_seconds}")
    if batch_rows < 1:
        raise InvalidParameter(f"batch_rows must be >= 1, got {batch_rows}")
    index_dir = str(index_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        served = ServedIndex(index_dir, batch_rows=batch_rows)
        served.reload()  # the index and the model for posted documents, loaded once here
        app.state.served = served
        index = served.ranker.index
        logger.info("serving %d trials from %s, build %s (ready in %.1f s)", len(index), served.location, index.build,
                    time.perf_counter() - started)
        stop_watch = served.watch(watch_seconds) if watch_seconds else None
        loop = asyncio.get_running_loop()
        on_sighup = reload_on_sighup and threading.current_thread() is threading.main_thread()
        if on_sighup:
            loop.add_signal_handler(
                signal.SIGHUP, lambda: loop.run_in_executor(None, lambda: served.reload(raise_errors=False))
            )
        try:
            yield
        finally:
            if on_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            if stop_watch is not None:
                stop_watch.set()

    app = FastAPI(
        title="related-trials",
        version=__version__,
        summary="Which other clinical trials are most related to this one?",
        lifespan=lifespan,
    )
    app.add_middleware(StoredListsMiddleware, ranker_of=lambda app: app.state.served.ranker)
    if cors_origins:  # added last: outermost, so the stored lists' answers get CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "If-None-Match"],
            expose_headers=["ETag"],
        )
    install_error_handlers(app)

    def ranker_of(request: Request) -> Ranker:
        """The ranker this request answers with: read once, kept to the end (hot swap safe)."""
        return request.app.state.served.ranker

    @app.get("/trials/{nct_id}/related", response_model=RelatedList, response_model_exclude_unset=True,
             responses={**_NOT_MODIFIED, **_ERRORS})
    def related(
        nct_id: NctId, request: Request, response: Response, filters: FilterQuery, k: KParam = 5,
        aspect: AspectParam = "overall",
    ):
        """The ``k`` indexed trials most related to indexed trial ``nct_id``.

        An unfiltered list is read from the lists stored with the index where it has them (built
        with ``--lists``; the common request is answered by :mod:`.stored_route` before this route);
        a filtered one is ranked.
        """
        ranker = ranker_of(request)
        nct_id = normalise_id(nct_id)
        ranker.index.row(nct_id)  # 404 for an unknown trial before any other work
        etag = _etag(ranker.index, request)
        if cached := _not_modified(request, etag):
            return cached
        response.headers.update({"ETag": etag, "Cache-Control": CACHE_CONTROL})
        items = ranker.related(nct_id, k, filters=filters, aspect=aspect)
        return {"nct_id": nct_id, "related": [r.to_dict() for r in items]}

    @app.post(
        "/related",
        response_model=RelatedList,
        responses={413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        openapi_extra={"requestBody": {"required": True, "description": "an API v2 study or a flat record",
                                       "content": {"application/json": {"schema": DOCUMENT_SCHEMA}}}},
    )
    async def related_to_document(
        request: Request, filters: FilterQuery, k: KParam = 5, aspect: AspectParam = "overall",
    ):
        """The ``k`` indexed trials most related to the trial document in the body."""
        doc = await read_json(request, max_body_bytes)
        trial = trial_from_document(doc, source="request body")
        items = await run_in_threadpool(ranker_of(request).related_to_trial, trial, k, filters=filters, aspect=aspect)
        return {"nct_id": trial.nct_id, "related": [r.to_dict() for r in items]}

    @app.get("/search", response_model=SearchList, responses={**_NOT_MODIFIED, 422: {"model": ErrorOut}})
    async def search(q: QueryText, request: Request, response: Response, filters: FilterQuery, k: KParam = 5):
        """The ``k`` indexed trials most related to free text (a sentence, a draft synopsis).

        Phrases the index records as conditions or interventions, and a phase the text names, are
        read as such (``matched``); the text is embedded, so the first call after a start loads nothing
        more but each call encodes (tens of milliseconds).
        """
        ranker = ranker_of(request)
        text = check_query_text(q)  # 422 with the reason before any work
        etag = _etag(ranker.index, request)
        if cached := _not_modified(request, etag):
            return cached
        response.headers.update({"ETag": etag, "Cache-Control": CACHE_CONTROL})
        result = await run_in_threadpool(ranker.search, text, k, filters=filters)
        return result.to_dict()

    @app.get("/trials/{nct_id}", response_model=TrialOut, responses={**_NOT_MODIFIED, 404: {"model": ErrorOut}})
    def trial(nct_id: NctId, request: Request, response: Response):
        """The stored trial's summary fields."""
        index = ranker_of(request).index
        found = index.trial(normalise_id(nct_id))
        etag = _etag(index, request)
        if cached := _not_modified(request, etag):
            return cached
        response.headers.update({"ETag": etag, "Cache-Control": CACHE_CONTROL})
        return _trial_out(found)

    @app.get("/health", response_model=Health)
    def health(request: Request, response: Response):
        """Liveness, which index build is served, and how reloads went."""
        served = request.app.state.served
        response.headers["Cache-Control"] = "no-store"
        return {"status": "ok", "index": _index_info(served.ranker.index),
                "reloads": served.reloads, "reload_error": served.last_error}

    @app.post(
        "/admin/reload",
        response_model=ReloadOut,
        include_in_schema=reload_token is not None,
        responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
                   500: {"model": ErrorOut}},
    )
    async def reload(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]):
        """Load the build ``CURRENT`` names now and swap it in; requests under way finish on the old.

        Needs ``Authorization: Bearer <token>``. A build that fails to load leaves the old one
        serving (500, with the reason).
        """
        if reload_token is None:
            return JSONResponse({"detail": "reload is off: start the server with --reload-token or "
                                           f"${RELOAD_TOKEN_ENV}"}, status_code=404)
        if refused := _refuse_token(credentials, reload_token.strip()):
            return refused
        served = request.app.state.served
        result = await run_in_threadpool(served.reload, raise_errors=False)
        if result.error:
            return JSONResponse({"detail": f"reload failed, still serving build {result.build}: {result.error}"},
                                status_code=500)
        return {"reloaded": result.reloaded, "previous": result.previous,
                "index": _index_info(served.ranker.index), "seconds": round(result.seconds, 3)}

    add_widget_routes(app, ranker_of)
    return app


