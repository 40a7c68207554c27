"""The HTTP JSON API and the embeddable widget, served with FastAPI and uvicorn.

    GET  /trials/{nct_id}/related   related list of an indexed trial (k, status, phase, ... filters)
    POST /related                   related list of a trial document sent in the body
    GET  /trials/{nct_id}           the stored trial's summary fields
    GET  /health                    liveness and the index manifest
    GET  /widget.js                 the ``<related-trials>`` custom element
    GET  /demo/{nct_id}             a registry-like page with the widget under it

The index (and the sentence model, for posted documents) load once in the lifespan and live on
``app.state``. Package errors become JSON ``{"detail": ...}`` responses in one place,
:func:`_install_error_handlers`.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import string
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Sequence

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from .exceptions import InvalidParameter, InvalidRecord, RelatedTrialsError, TrialNotFound
from .index import TrialIndex
from .loaders import trial_from_document
from .rank import Filters, Ranker
from .trial import Trial

__all__ = ["create_app", "serve", "serve_in_thread", "BodyTooLarge"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_K = 100
CACHE_CONTROL = "public, max-age=300"
REGISTRY_URL = "https://clinicaltrials.gov/study/{nct_id}"
DEMO_DEFAULT = "NCT02213705"


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


class Health(BaseModel):
    status: Literal["ok"]
    index: IndexInfo


class ErrorOut(BaseModel):
    detail: str


_ERRORS = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_NOT_MODIFIED = {304: {"description": "Not Modified: If-None-Match named the current ETag"}}
_STATUS_OF = ((TrialNotFound, 404), (BodyTooLarge, 413), (InvalidParameter, 422), (InvalidRecord, 422))

KParam = Annotated[int, Query(ge=1, le=MAX_K, description=f"number of related trials (1-{MAX_K})")]
Multi = Annotated[list[str] | None, Query(description="repeat for several values; either registry spelling")]


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


def _etag(fingerprint: str, request: Request) -> str:
    """An entity tag for this index and this request's path and (sorted) query."""
    query = sorted(request.query_params.multi_items())
    key = json.dumps([fingerprint, request.url.path, query])
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
    index_dir: str | Path, *, cors_origins: Sequence[str] = (), max_body_bytes: int = 1_000_000
) -> FastAPI:
    """The FastAPI app over the index in ``index_dir`` (loaded at start-up, not here).

    Args:
        index_dir: an index directory written by ``related-trials build``.
        cors_origins: origins allowed to call the API from a browser (``"*"`` for any).
        max_body_bytes: the largest trial document ``POST /related`` accepts (413 above).
    """
    if max_body_bytes < 1:
        raise InvalidParameter(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    index_dir = Path(index_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        index = TrialIndex.load(index_dir)
        app.state.ranker = Ranker(index)
        index.text_featurizer()  # the model for posted documents, loaded once here
        logger.info("serving %d trials from %s (ready in %.1f s)", len(index), index.path, time.perf_counter() - started)
        yield

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
        return request.app.state.ranker

    @app.get("/trials/{nct_id}/related", response_model=RelatedList, responses={**_NOT_MODIFIED, **_ERRORS})
    def related(
        nct_id: str, request: Request, response: Response, k: KParam = 5,
        status: Multi = None, phase: Multi = None, intervention_type: Multi = None, study_type: Multi = None,
    ):
        """The ``k`` indexed trials most related to indexed trial ``nct_id``."""
        ranker = ranker_of(request)
        nct_id = _normalise_id(nct_id)
        ranker.index.row(nct_id)  # 404 for an unknown trial before any other work
        filters = Filters.parse(status=status, phase=phase, intervention_type=intervention_type, study_type=study_type)
        etag = _etag(ranker.index.fingerprint, request)
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
                                       "content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    async def related_to_document(
        request: Request, k: KParam = 5,
        status: Multi = None, phase: Multi = None, intervention_type: Multi = None, study_type: Multi = None,
    ):
        """The ``k`` indexed trials most related to the trial document in the body."""
        filters = Filters.parse(status=status, phase=phase, intervention_type=intervention_type, study_type=study_type)
        doc = await _read_json(request, max_body_bytes)
        trial = trial_from_document(doc, source="request body")
        items = await run_in_threadpool(ranker_of(request).related_to_trial, trial, k, filters=filters)
        return {"nct_id": trial.nct_id, "related": [r.to_dict() for r in items]}

    @app.get("/trials/{nct_id}", response_model=TrialOut, responses={**_NOT_MODIFIED, 404: {"model": ErrorOut}})
    def trial(nct_id: str, request: Request, response: Response):
        """The stored trial's summary fields."""
        index = ranker_of(request).index
        found = index.trial(_normalise_id(nct_id))
        etag = _etag(index.fingerprint, request)
        if cached := _not_modified(request, etag):
            return cached
        response.headers.update({"ETag": etag, "Cache-Control": CACHE_CONTROL})
        return _trial_out(found)

    @app.get("/health", response_model=Health)
    def health(request: Request, response: Response):
        """Liveness, and which index is served."""
        manifest = ranker_of(request).index.manifest
        response.headers["Cache-Control"] = "no-store"
        info = {k: manifest.get(k) for k in ("model", "count", "built_at", "fingerprint", "backend")}
        return {"status": "ok", "index": info}

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
        nct_id = DEMO_DEFAULT if DEMO_DEFAULT in index else index.trials[0].nct_id
        return RedirectResponse(f"/demo/{nct_id}")

    return app


def serve(index_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          cors_origins: Sequence[str] = ()) -> None:
    """Serve the API and the widget with uvicorn until interrupted."""
    import faiss
    import uvicorn

    # Requests already run in parallel (one thread each); OpenMP threads inside every single
    # search only contend with them: 1 thread more than halves the related list's latency.
    faiss.omp_set_num_threads(1)
    uvicorn.run(create_app(index_dir, cors_origins=cors_origins), host=host, port=port, log_level="info")


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
