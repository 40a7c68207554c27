"""The embeddable widget and its demo page: ``/widget.js``, ``/demo/{nct_id}`` (a registry-like
trial page with the ``<related-trials>`` element under it) and the redirect from ``/``."""

from __future__ import annotations

import html
import string
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from ..ingest import Trial

__all__ = ["add_widget_routes", "STATIC_DIR", "REGISTRY_URL", "CACHE_CONTROL", "normalise_id"]

STATIC_DIR = Path(__file__).parent / "static"
CACHE_CONTROL = "public, max-age=300"
REGISTRY_URL = "https://clinicaltrials.gov/study/{nct_id}"
DEMO_DEFAULT = "NCT02213705"


def normalise_id(nct_id: str) -> str:
    return nct_id.strip().upper()


def label(value: str | None) -> str:
    """``ACTIVE_NOT_RECRUITING`` -> ``Active not recruiting``; ``PHASE1/PHASE2`` -> ``Phase 1/Phase 2``."""
    if not value:
        return "Not given"
    if value == "NA":
        return "Not applicable"
    words = value.replace("PHASE", "PHASE ").replace("_", " ").replace("/", " / ").lower()
    return " ".join(words.split()).capitalize().replace(" / p", "/P")


def trial_html(trial: Trial | None, nct_id: str) -> str:
    esc = html.escape
    if trial is None:
        return (
            f'<header class="trial-head"><h1>Trial not found</h1>'
            f'<p class="nct">NCT ID: <span>{esc(nct_id)}</span></p></header>'
            f'<section class="card"><p>The index holds no trial <strong>{esc(nct_id)}</strong>. '
            "Check the NCT ID, or rebuild the index with this trial's record.</p></section>"
        )
    facts = [
        ("Recruitment Status", label(trial.overall_status.value if trial.overall_status else None)),
        ("Clinical Phase", label(trial.phase)),
        ("Total Enrollment", f"{trial.enrollment:,} participants" if trial.enrollment is not None else "Not given"),
        ("Study Classification", label(trial.study_type.value if trial.study_type else None)),
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


def add_widget_routes(app: FastAPI, ranker_of: Callable) -> None:
    """Add the widget's script and stylesheet and the demo pages to ``app``; ``ranker_of(request)``
    gives the ranker a request answers with."""
    template = string.Template((STATIC_DIR / "demo.html").read_text(encoding="utf-8"))

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
        nct_id = normalise_id(nct_id)
        found = index.trials[index.rows[nct_id]] if nct_id in index else None
        page = template.substitute(
            title=html.escape(found.title if found else "Trial not found"),
            nct_id=html.escape(nct_id, quote=True),
            trial=trial_html(found, nct_id),
            count=f"{len(index):,}",
        )
        return HTMLResponse(page, status_code=200 if found else 404)

    @app.get("/demo", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    def demo_default(request: Request):
        index = ranker_of(request).index
        nct_id = DEMO_DEFAULT if DEMO_DEFAULT in index else index.nct_id(0)
        return RedirectResponse(f"/demo/{nct_id}")
