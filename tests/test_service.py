"""The HTTP API through FastAPI's TestClient, on the session's small real index."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from similarity import Filters, IndexNotFound, InvalidParameter
from similarity.service import create_app
from similarity.service.schemas import MAX_K

pytestmark = pytest.mark.slow

SEED = "NCT02213705"
ORIGIN = "https://registry.example.org"
LIMIT = 60_000


@pytest.fixture(scope="module")
def client(index_dir):
    """One app for the module: the index and the model load once, in the lifespan."""
    with TestClient(create_app(index_dir, cors_origins=[ORIGIN], max_body_bytes=LIMIT)) as client:
        yield client


@pytest.fixture(scope="module")
def page_study(data_dir):
    """An API v2 study that is in the index (from the fixture page of studies)."""
    return json.loads((data_dir / "apiv2-page.json").read_text())["studies"][0]


def ids(response):
    return [item["nct_id"] for item in response.json()["related"]]


# ------------------------------------------------------------------ GET /trials/{id}/related
def test_related_list_matches_the_ranker(client, ranker):
    response = client.get(f"/trials/{SEED}/related", params={"k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["nct_id"] == SEED
    expected = ranker.related(SEED, 3)
    assert ids(response) == [r.nct_id for r in expected]
    for item, want in zip(body["related"], expected):
        assert set(item) == {"nct_id", "title", "status", "phase", "score", "why"}
        assert (item["title"], item["status"], item["phase"]) == (want.title, want.status, want.phase)
        assert item["score"] == pytest.approx(want.score)
        assert item["why"]["summary"] == want.why["summary"]
        assert sum(item["why"]["components"].values()) == pytest.approx(item["score"])


def test_related_defaults_to_five_and_accepts_lower_case_ids(client):
    response = client.get(f"/trials/{SEED.lower()}/related")
    assert response.status_code == 200
    assert len(response.json()["related"]) == 5
    assert response.json()["nct_id"] == SEED


@pytest.mark.parametrize("k", [1, MAX_K])
def test_k_bounds_are_inclusive(client, index, k):
    response = client.get(f"/trials/{SEED}/related", params={"k": k})
    assert response.status_code == 200
    assert len(response.json()["related"]) == min(k, len(index) - 1)


@pytest.mark.parametrize("k", [0, -3, MAX_K + 1, "many"])
def test_k_outside_bounds_is_422(client, k):
    response = client.get(f"/trials/{SEED}/related", params={"k": k})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("k: ") and repr(str(k)) in detail


def test_repeated_filters_in_both_spellings(client, ranker):
    current = client.get(f"/trials/{SEED}/related", params=[("k", 10), ("status", "COMPLETED"), ("status", "RECRUITING")])
    legacy = client.get(f"/trials/{SEED}/related", params=[("k", 10), ("status", "Completed"), ("status", "Recruiting")])
    assert current.status_code == legacy.status_code == 200
    assert ids(current) == ids(legacy)
    assert {item["status"] for item in current.json()["related"]} <= {"COMPLETED", "RECRUITING"}
    want = ranker.related(SEED, 10, filters=Filters.parse(status=["COMPLETED", "RECRUITING"]))
    assert ids(current) == [r.nct_id for r in want]


@pytest.mark.parametrize(
    "params, check",
    [
        ([("phase", "Phase 2"), ("phase", "PHASE3")], lambda t: {"PHASE2", "PHASE3"} & set(t.phase.split("/"))),
        ([("intervention_type", "Drug")], lambda t: "DRUG" in {i.value for i in t.intervention_types}),
        ([("study_type", "Observational [Patient Registry]")], lambda t: t.study_type.value == "OBSERVATIONAL"),
    ],
)
def test_each_filter_keeps_only_matching_trials(client, index, params, check):
    response = client.get(f"/trials/{SEED}/related", params=[("k", 10), *params])
    assert response.status_code == 200
    assert response.json()["related"], "the fixture index should hold matching trials"
    assert all(check(index.trial(i)) for i in ids(response))


def test_filter_matching_nothing_gives_an_empty_list(client):
    response = client.get(f"/trials/{SEED}/related", params={"status": "WITHHELD"})
    assert response.status_code == 200
    assert response.json() == {"nct_id": SEED, "related": []}


def test_unknown_filter_value_is_422_naming_the_allowed_values(client):
    response = client.get(f"/trials/{SEED}/related", params={"status": "ongoing"})
    assert response.status_code == 422
    assert "'ongoing'" in response.json()["detail"] and "RECRUITING" in response.json()["detail"]


def test_unknown_nct_id_is_404(client):
    response = client.get("/trials/NCT99999999/related")
    assert response.status_code == 404
    assert response.json() == {"detail": "trial 'NCT99999999' is not in the index"}


# ------------------------------------------------------------------ caching
def test_etag_and_cache_control_then_304(client):
    url = f"/trials/{SEED}/related?k=3"
    first = client.get(url)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    listed = client.get(url, headers={"If-None-Match": f'"stale", W/{etag}'})
    assert listed.status_code == 304
    stale = client.get(url, headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.json() == first.json()


def test_etag_depends_on_the_query_and_the_index(client, index):
    a = client.get(f"/trials/{SEED}/related?k=3").headers["etag"]
    b = client.get(f"/trials/{SEED}/related?k=4").headers["etag"]
    c = client.get(f"/trials/{SEED}/related?k=3&status=COMPLETED").headers["etag"]
    assert len({a, b, c}) == 3
    assert index.fingerprint not in a  # derived (hashed), not leaked verbatim


def test_trial_endpoint_is_cacheable_too(client):
    first = client.get(f"/trials/{SEED}")
    assert client.get(f"/trials/{SEED}", headers={"If-None-Match": first.headers["etag"]}).status_code == 304


# ------------------------------------------------------------------ GET /trials/{id}, /health
def test_trial_summary_fields(client, index):
    response = client.get(f"/trials/{SEED}")
    assert response.status_code == 200
    body, trial = response.json(), index.trial(SEED)
    assert body["nct_id"] == SEED and body["title"] == trial.title
    assert body["status"] == trial.overall_status.value and body["phase"] == trial.phase
    assert body["enrollment"] == trial.enrollment and body["conditions"] == list(trial.conditions)
    assert body["brief_summary"] == trial.brief_summary and body["start_date"] == trial.start_date
    assert body["url"] == f"https://clinicaltrials.gov/study/{SEED}"
    assert "eligibility_criteria" not in body


def test_trial_unknown_is_404(client):
    response = client.get("/trials/NCT00000001")
    assert response.status_code == 404 and "NCT00000001" in response.json()["detail"]


def test_health_reports_the_index(client, index):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "index": {
            "model": index.manifest.model,
            "count": len(index),
            "built_at": index.manifest.built_at,
            "fingerprint": index.fingerprint,
            "backend": index.manifest.backend,
            "build": index.path.name,
        },
        "reloads": 0,
        "reload_error": None,
    }
    assert response.headers["cache-control"] == "no-store"


# ------------------------------------------------------------------ POST /related
def test_post_api_v2_study_not_in_the_index(client, page_study):
    doc = copy.deepcopy(page_study)
    original = doc["protocolSection"]["identificationModule"]["nctId"]
    doc["protocolSection"]["identificationModule"]["nctId"] = "NCT99999901"
    response = client.post("/related", params={"k": 4}, json=doc)
    assert response.status_code == 200
    assert response.json()["nct_id"] == "NCT99999901"
    assert ids(response)[0] == original  # the same text under a new ID: its twin comes first
    assert len(ids(response)) == 4


def test_post_flat_record_with_filters(client, index, ranker):
    record = index.trial(SEED).to_dict()
    record["nct_id"] = "NCT99999902"
    response = client.post("/related", params=[("k", 5), ("status", "Completed")], json=record)
    assert response.status_code == 200
    assert all(item["status"] == "COMPLETED" for item in response.json()["related"])
    unfiltered = client.post("/related", params={"k": 3}, json=record)
    assert ids(unfiltered)[0] == SEED
    assert ids(unfiltered)[1:] == [r.nct_id for r in ranker.related(SEED, 2)]


def test_post_indexed_document_never_lists_itself(client, page_study):
    response = client.post("/related", json=page_study)
    assert response.status_code == 200
    assert page_study["protocolSection"]["identificationModule"]["nctId"] not in ids(response)


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "empty request body"),
        (json.dumps({"brief_title": "No ID here"}).encode(), "nct_id"),
        (json.dumps({"nct_id": "12345"}).encode(), "NCT followed by 8 digits"),
        (json.dumps({"protocolSection": {"identificationModule": {"briefTitle": "x"}}}).encode(), "NCT"),
    ],
)
def test_post_bad_documents_are_422(client, body, words):
    response = client.post("/related", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_post_bad_k_is_422(client, index):
    response = client.post("/related", params={"k": 0}, json=index.trial(SEED).to_dict())
    assert response.status_code == 422 and response.json()["detail"].startswith("k: ")


def test_post_over_the_declared_limit_is_413(client):
    response = client.post("/related", content=b" " * (LIMIT + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["detail"]


def test_post_over_the_limit_without_content_length_is_413(client):
    def chunks():  # a generator body is sent chunked: only the bytes actually read can tell
        for _ in range(LIMIT // 1000 + 2):
            yield b" " * 1000

    response = client.post("/related", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_unexpected_errors_are_json_500(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.state.served.ranker, "related", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)  # the module client's lifespan
    response = quiet.get(f"/trials/{SEED}/related")
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}


# ------------------------------------------------------------------ CORS, OpenAPI, static
def test_cors_headers_when_configured(client):
    simple = client.get("/health", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    preflight = client.options(
        f"/trials/{SEED}/related", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    other = client.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_by_default(index_dir):
    bare = TestClient(create_app(index_dir))  # no lifespan needed for a static file
    response = bare.get("/widget.js", headers={"Origin": ORIGIN})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_openapi_lists_the_api(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/trials/{nct_id}/related", "/related", "/search", "/trials/{nct_id}", "/health"}
    related = schema["paths"]["/trials/{nct_id}/related"]["get"]
    params = {p["name"]: p for p in related["parameters"]}
    assert {"nct_id", "k", "status", "phase", "intervention_type", "study_type"} <= set(params)
    assert params["k"]["schema"]["maximum"] == MAX_K
    assert {"RelatedList", "RelatedItem", "Why", "TrialOut", "Health", "ErrorOut"} <= set(schema["components"]["schemas"])
    assert "requestBody" in schema["paths"]["/related"]["post"]


def test_widget_script_is_served(client):
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert 'customElements.define("related-trials"' in response.text


def test_demo_page_shows_the_trial_and_the_widget(client, index):
    response = client.get(f"/demo/{SEED}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert index.trial(SEED).title in page and "More Related Trials" in page
    assert f'<related-trials id="related" nct-id="{SEED}"' in page and 'src="/widget.js"' in page


def test_demo_page_for_unknown_or_hostile_ids(client):
    response = client.get("/demo/NCT00000000")
    assert response.status_code == 404 and "Trial not found" in response.text
    assert 'nct-id="NCT00000000"' in response.text
    hostile = client.get('/demo/"><img src=x onerror=alert(1)>')
    assert hostile.status_code == 404 and "<img" not in hostile.text.lower()
    assert "&quot;&gt;&lt;IMG" in hostile.text


def test_root_redirects_to_the_demo(client):
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == f"/demo/{SEED}"


# ------------------------------------------------------------------ start-up
def test_missing_index_fails_at_start_up(tmp_path):
    app = create_app(tmp_path)  # nothing is loaded at creation
    with pytest.raises(IndexNotFound):
        with TestClient(app):
            pass


def test_body_limit_must_be_positive(index_dir):
    with pytest.raises(InvalidParameter):
        create_app(index_dir, max_body_bytes=0)


def test_registry_filters_as_query_parameters(client, ranker, page_study):
    params = {"country": ["UNITED STATES"], "recruiting_only": "false", "age": 30, "sex": "female",
              "start_after": "1990-01", "k": 10}
    f = Filters.parse(country=["united states"], age=30, sex="female", start_after="1990-01")
    got = client.get(f"/trials/{SEED}/related", params=params)
    assert got.status_code == 200
    assert [r["nct_id"] for r in got.json()["related"]] == [r.nct_id for r in ranker.related(SEED, 10, filters=f)]
    posted = client.post("/related", params=params, json=page_study)
    assert posted.status_code == 200
    assert all(f.matches(ranker.index.trial(r["nct_id"])) for r in posted.json()["related"])
    for bad in ({"age": -1}, {"age": "old"}, {"sex": "other"}, {"start_after": "2014/01/01"},
                {"start_after": "0000"}, {"start_before": "2014-13"}, {"start_after": "2014-02-30"}):
        response = client.get(f"/trials/{SEED}/related", params=bad)
        assert response.status_code == 422 and response.json()["detail"], bad
    schema = client.get("/openapi.json").json()
    names = {p["name"] for p in schema["paths"]["/trials/{nct_id}/related"]["get"]["parameters"]}
    assert {"country", "recruiting_only", "age", "sex", "start_after", "start_before"} <= names
