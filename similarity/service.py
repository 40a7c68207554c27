"""The HTTP JSON API and the embeddable widget, served with FastAPI and uvicorn.

    GET  /trials/{nct_id}/related   related list of an indexed trial (k, status, phase, ... filters)
    POST /related                   related list of a trial document sent in the body
    GET  /trials/{nct_id}           the stored trial's summary fields
    GET  /health                    liveness, the index served (build, fingerprint) and reloads
    POST /admin/reload              load the build ``CURRENT`` names now (bearer token; off without one)
    GET  /widget.js                 the ``<related-trials>`` custom element
    GET  /demo/{nct_id}             a registry-like page with the widget under it

The index (and the sentence model, for posted documents) load in the lifespan into a
:class:`~similarity.hotswap.ServedIndex` on ``app.state.served``; a rebuilt index is swapped in
whole (on ``POST /admin/reload``, SIGHUP, or a poll of ``CURRENT``), and every request answers
from the ranker it read when it started. Package errors become JSON ``{"detail": ...}``
responses in one place, :func:`_install_error_handlers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import signal
import string
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Sequence

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from .exceptions import InvalidParameter, InvalidRecord, RelatedTrialsError, TrialNotFound
from .hotswap import ServedIndex
from .index import TrialIndex
from .loaders import trial_from_document
from .loaders.document_schema import DOCUMENT_SCHEMA
from .rank import Filters, Ranker
from .trial import InterventionType, Phase, Status, StudyType, Trial

__all__ = ["create_app", "serve", "serve_in_thread", "BodyTooLarge", "RELOAD_TOKEN_ENV"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_K = 100
CACHE_CONTROL = "public, max-age=300"
REGISTRY_URL = "https://clinicaltrials.gov/study/{nct_id}"
DEMO_DEFAULT = "NCT02213705"
MAX_ID_CHARS = 64
MAX_FILTER_VALUES = 20
RELOAD_TOKEN_ENV = "RELATED_TRIALS_RELOAD_TOKEN"
MIN_TOKEN_CHARS = 16


class BodyTooLarge(RelatedTrialsError, ValueError):
    """A request body over the service's ``max_body_bytes``."""


# ------------------------------------------------------------------ response models
class Relation(BaseModel):
    query: str | None
    candidate: str | None
    relation: str = Field(description="same, different, overlapping, earlier, later or unknown")


class Why(BaseModel):
    """Why a trial is on the list: facts shared with the query and the score's components."""

    model_config = ConfigDict(extra="allow")
    summary: str = Field(description="one short human-readable reason")
    shared: dict[str, list[str]]
    phase: Relation
    status: Relation
    fields: dict[str, float | None] = Field(description="cosine per text field, null where missing")
    components: dict[str, float] = Field(description="weighted semantic/structured/lexical; sum = score")
    stage: Literal["rerank", "retrieve"] | None = Field(
        default=None,
        description="with a cascade blend (not the default): which blend placed and scored the trial; the rerank "
                    "blend orders the first ten, the retrieve blend the rest, so scores compare within a stage")
    near_duplicates: list[str] | None = Field(
        default=None, description="near-duplicate registrations of the same programme spaced out below this one")


class RelatedItem(BaseModel):
    nct_id: str
    title: str
    status: str | None
    phase: str | None
    score: float
    why: Why


class RelatedList(BaseModel):
    nct_id: str = Field(description="the query trial")
    related: list[RelatedItem]


class InterventionOut(BaseModel):
    type: str | None
    name: str


class TrialOut(BaseModel):
    nct_id: str
    title: str
    brief_title: str | None
    official_title: str | None
    acronym: str | None
    status: str | None
    phase: str | None
    study_type: str | None
    conditions: list[str] | None
    interventions: list[InterventionOut] | None
    brief_summary: str | None
    enrollment: int | None
    start_date: str | None
    completion_date: str | None
    lead_sponsor: str | None
    url: str


class IndexInfo(BaseModel):
    model: str
    count: int
    built_at: str | None
    fingerprint: str
    backend: str
    build: str | None = Field(description="the build directory served (DIR/builds/<build>)")


class Health(BaseModel):
    status: Literal["ok"]
    index: IndexInfo
    reloads: int = Field(description="index swaps since the server started")
    reload_error: str | None = Field(description="why the last reload failed (the old build still serves)")


class ReloadOut(BaseModel):
    reloaded: bool = Field(description="false when CURRENT already named the build served")
    previous: str | None = Field(description="the build served before")
    index: IndexInfo
    seconds: float


class ErrorOut(BaseModel):
    detail: str


_ERRORS = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_NOT_MODIFIED = {304: {"description": "Not Modified: If-None-Match named the current ETag"}}
_STATUS_OF = ((TrialNotFound, 404), (BodyTooLarge, 413), (InvalidParameter, 422), (InvalidRecord, 422))

_BEARER = HTTPBearer(auto_error=False, scheme_name="reload token",
                     description="the token the server was started with (--reload-token)")
KParam = Annotated[int, Query(ge=1, le=MAX_K, description=f"number of related trials (1-{MAX_K})")]
NctId = Annotated[str, PathParam(max_length=MAX_ID_CHARS, description="an NCT ID (case and spaces ignored)")]


def _filter(values: type[Enum]) -> Any:
    """A repeatable filter parameter: the schema lists the current spellings; legacy ones work too."""
    item = Annotated[str, WithJsonSchema({"type": "string", "enum": [v.value for v in values]})]
    return Annotated[list[item] | None, Query(
        max_length=MAX_FILTER_VALUES,
        description=f"repeat for several values (at most {MAX_FILTER_VALUES}); the registry's legacy "
                    "spellings ('Active, not recruiting', 'Phase 1/Phase 2') are accepted too",
    )]  # fmt: skip


StatusFilter, PhaseFilter = _filter(Status), _filter(Phase)
InterventionTypeFilter, StudyTypeFilter = _filter(InterventionType), _filter(StudyType)


# ------------------------------------------------------------------ helpers
def _install_error_handlers(app: FastAPI) -> None:
    """The one place where errors become HTTP status codes and ``{"detail": message}`` bodies."""

    async def package_error(request: Request, exc: Exception) -> JSONResponse:
        code = next((c for cls, c in _STATUS_OF if isinstance(exc, cls)), 500)
        if code == 500:
            logger.error("error on %s %s", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"detail": "internal server error"}, status_code=500)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
            got = f" (got {err['input']!r})" if err.get("input") is not None and err.get("type") != "missing" else ""
            parts.append(f"{name}: {err.get('msg', 'invalid')}{got}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)

    app.add_exception_handler(RelatedTrialsError, package_error)
    app.add_exception_handler(Exception, package_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _etag(index: TrialIndex, request: Request) -> str:
    """An entity tag for this index build and this request's path and (sorted) query.

    The build is part of it: a rebuild of the same trials (same fingerprint) with other settings
    can rank them differently.
    """
    query = sorted(request.query_params.multi_items())
    key = json.dumps([index.fingerprint, index.path.name if index.path else None, request.url.path, query])
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> Response | None:
    """A 304 when the client's ``If-None-Match`` already names ``etag``."""
    header = request.headers.get("if-none-match")
    if not header:
        return None
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    if etag in tags or "*" in tags:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    return None


async def _read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing more than ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is {int(declared)} bytes, the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
    if not body:
        raise InvalidRecord("empty request body; send a trial document (API v2 study JSON or flat record)")
    try:
        return json.loads(bytes(body).decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"request body: invalid UTF-8 at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"request body is not valid JSON: {exc}") from None


def _index_info(index: TrialIndex) -> dict[str, Any]:
    info = {k: index.manifest.get(k) for k in ("model", "count", "built_at", "fingerprint", "backend")}
    return {**info, "build": index.path.name if index.path else None}


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


def _normalise_id(nct_id: str) -> str:
    return nct_id.strip().upper()


# ------------------------------------------------------------------ demo page
def _label(value: str | None) -> str:
    """``ACTIVE_NOT_RECRUITING`` -> ``Active not recruiting``; ``PHASE1/PHASE2`` -> ``Phase 1/Phase 2``."""
    if not value:
        return "Not given"
    if value == "NA":
        return "Not applicable"
    words = value.replace("PHASE", "PHASE ").replace("_", " ").replace("/", " / ").lower()
    return " ".join(words.split()).capitalize().replace(" / p", "/P")


def _trial_html(trial: Trial | None, nct_id: str) -> str:
    esc = html.escape
    if trial is None:
        return (
            f'<header class="trial-head"><h1>Trial not found</h1>'
            f'<p class="nct">NCT ID: <span>{esc(nct_id)}</span></p></header>'
            f'<section class="card"><p>The index holds no trial <strong>{esc(nct_id)}</strong>. '
            "Check the NCT ID, or rebuild the index with this trial's record.</p></section>"
        )
    facts = [
        ("Recruitment Status", _label(trial.overall_status.value if trial.overall_status else None)),
        ("Clinical Phase", _label(trial.phase)),
        ("Total Enrollment", f"{trial.enrollment:,} participants" if trial.enrollment is not None else "Not given"),
        ("Study Classification", _label(trial.study_type.value if trial.study_type else None)),
        ("Study Start Date", trial.start_date or "Not given"),
        ("Study Completion Date", trial.completion_date or "Not given"),
    ]
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    chips = "".join(f"<li>{esc(c)}</li>" for c in trial.conditions or ()) or "<li>Not given</li>"
    sponsor = f'<p class="sponsor">Sponsor: {esc(trial.lead_sponsor)}</p>' if trial.lead_sponsor else ""
    return (
        f'<header class="trial-head"><h1>{esc(trial.title)}</h1>'
        f'<p class="nct">NCT ID: <a href="{esc(REGISTRY_URL.format(nct_id=trial.nct_id))}">{esc(trial.nct_id)}</a></p>'
        f"{sponsor}</header>"
        f'<section class="card" aria-labelledby="basic"><h2 id="basic">Basic Information</h2>'
        f'<dl class="facts">{dl}</dl></section>'
        f'<section class="card" aria-labelledby="summary"><h2 id="summary">Brief Summary</h2>'
        f"<p>{esc(trial.brief_summary or 'No summary given.')}</p></section>"
        f'<section class="card" aria-labelledby="conditions"><h2 id="conditions">Conditions</h2>'
        f'<ul class="chips">{chips}</ul></section>'
    )


# ------------------------------------------------------------------ the app
def create_app(
    index_dir: str | Path,
    *,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = 1_000_000,
    reload_token: str | None = None,
    watch_seconds: float | None = None,
    reload_on_sighup: bool = False,
) -> FastAPI:
    """The FastAPI app over the index in ``index_dir`` (loaded at start-up, not here).

    Args:
        index_dir: an index directory written by ``related-trials build``.
        cors_origins: origins allowed to call the API from a browser (``"*"`` for any).
        max_body_bytes: the largest trial document ``POST /related`` accepts (413 above).
        reload_token: the bearer token of ``POST /admin/reload`` (at least 16 characters);
            ``None`` turns the endpoint off (404).
        watch_seconds: poll ``CURRENT`` this often and swap in a new build (``None``: no poll).
        reload_on_sighup: reload on SIGHUP (only where the server runs in the main thread).
    """
    if max_body_bytes < 1:
        raise InvalidParameter(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if reload_token is not None and len(reload_token.strip()) < MIN_TOKEN_CHARS:
        raise InvalidParameter(
            f"reload_token must be at least {MIN_TOKEN_CHARS} characters, got {len(reload_token.strip())}"
        )
    if watch_seconds is not None and watch_seconds <= 0:
        raise InvalidParameter(f"watch_seconds must be > 0 or None, got {watch_seconds}")
    index_dir = Path(index_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        served = ServedIndex(index_dir)
        served.reload()  # the index and the model for posted documents, loaded once here
        app.state.served = served
        index = served.ranker.index
        logger.info("serving %d trials from %s (ready in %.1f s)", len(index), index.path, time.perf_counter() - started)
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

    from . import __version__

    app = FastAPI(
        title="related-trials",
        version=__version__,
        summary="Which other clinical trials are most related to this one?",
        lifespan=lifespan,
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "If-None-Match"],
            expose_headers=["ETag"],
        )
    _install_error_handlers(app)
    template = string.Template((STATIC_DIR / "demo.html").read_text(encoding="utf-8"))

    def ranker_of(request: Request) -> Ranker:
        """The ranker this request answers with: read once, kept to the end (hot swap safe)."""
        return request.app.state.served.ranker

    @app.get("/trials/{nct_id}/related", response_model=RelatedList, responses={**_NOT_MODIFIED, **_ERRORS})
    def related(
        nct_id: NctId, request: Request, response: Response, k: KParam = 5,
        status: StatusFilter = None, phase: PhaseFilter = None,
        intervention_type: InterventionTypeFilter = None, study_type: StudyTypeFilter = None,
    ):
        """The ``k`` indexed trials most related to indexed trial ``nct_id``."""
        ranker = ranker_of(request)
        nct_id = _normalise_id(nct_id)
        ranker.index.row(nct_id)  # 404 for an unknown trial before any other work
        filters = Filters.parse(status=status, phase=phase, intervention_type=intervention_type, study_type=study_type)
        etag = _etag(ranker.index, request)
        if cached := _not_modified(request, etag):
            return cached
        response.headers.update({"ETag": etag, "Cache-Control": CACHE_CONTROL})
        items = ranker.related(nct_id, k, filters=filters)
        return {"nct_id": nct_id, "related": [r.to_dict() for r in items]}

    @app.post(
        "/related",
        response_model=RelatedList,
        responses={413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        openapi_extra={"requestBody": {"required": True, "description": "an API v2 study or a flat record",
                                       "content": {"application/json": {"schema": DOCUMENT_SCHEMA}}}},
    )
    async def related_to_document(
        request: Request, k: KParam = 5,
        status: StatusFilter = None, phase: PhaseFilter = None,
        intervention_type: InterventionTypeFilter = None, study_type: StudyTypeFilter = None,
    ):
        """The ``k`` indexed trials most related to the trial document in the body."""
        filters = Filters.parse(status=status, phase=phase, intervention_type=intervention_type, study_type=study_type)
        doc = await _read_json(request, max_body_bytes)
        trial = trial_from_document(doc, source="request body")
        items = await run_in_threadpool(ranker_of(request).related_to_trial, trial, k, filters=filters)
        return {"nct_id": trial.nct_id, "related": [r.to_dict() for r in items]}

    @app.get("/trials/{nct_id}", response_model=TrialOut, responses={**_NOT_MODIFIED, 404: {"model": ErrorOut}})
    def trial(nct_id: NctId, request: Request, response: Response):
        """The stored trial's summary fields."""
        index = ranker_of(request).index
        found = index.trial(_normalise_id(nct_id))
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
    async def reload(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]):
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

    @app.get("/widget.js", include_in_schema=False)
    def widget_js():
        return FileResponse(STATIC_DIR / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": CACHE_CONTROL})

    @app.get("/static/demo.css", include_in_schema=False)
    def demo_css():
        return FileResponse(STATIC_DIR / "demo.css", media_type="text/css", headers={"Cache-Control": CACHE_CONTROL})

    @app.get("/demo/{nct_id}", response_class=HTMLResponse, include_in_schema=False)
    def demo(nct_id: str, request: Request):
        """A registry-like page for one trial with the widget under it (404 page for unknown IDs)."""
        index = ranker_of(request).index
        nct_id = _normalise_id(nct_id)
        found = index.trials[index.rows[nct_id]] if nct_id in index else None
        page = template.substitute(
            title=html.escape(found.title if found else "Trial not found"),
            nct_id=html.escape(nct_id, quote=True),
            trial=_trial_html(found, nct_id),
            count=f"{len(index):,}",
        )
        return HTMLResponse(page, status_code=200 if found else 404)

    @app.get("/demo", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    def demo_default(request: Request):
        index = ranker_of(request).index
        nct_id = DEMO_DEFAULT if DEMO_DEFAULT in index else index.nct_id(0)
        return RedirectResponse(f"/demo/{nct_id}")

    return app


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
