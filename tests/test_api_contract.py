"""The API contract: schemathesis generates requests from /openapi.json against the live server.

Every operation in the schema (the reload endpoint included, a token being configured) gets
generated valid and invalid requests on loopback; each response must not be a 5xx and must match
the schema (status code documented, JSON body of the documented shape, content type, headers),
and a valid request must not be refused (the body schema says exactly what the loaders accept).
Bounded by ``MAX_EXAMPLES`` per operation and mode, so the module runs in well under two minutes
on two cores.

(Schemathesis' own ``from_fixture`` parametrization does not run on pytest 9.2, so the operations
are parametrized here and each gets a plain hypothesis test of the operation's strategy.)
"""

from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from similarity.service import serve_in_thread

pytestmark = pytest.mark.slow

TOKEN = "contract-reload-token-0123456789"
MAX_EXAMPLES = 150
OPERATIONS = [
    ("GET", "/trials/{nct_id}/related"),
    ("POST", "/related"),
    ("GET", "/search"),
    ("GET", "/trials/{nct_id}"),
    ("GET", "/health"),
    ("POST", "/admin/reload"),
]
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# Negative cases need a parameter that can be invalid: /health and /admin/reload take none, and
# any string is a valid (if unknown: 404) NCT ID in the path.
CASES = [(method, path, POSITIVE) for method, path in OPERATIONS] + [
    ("GET", "/trials/{nct_id}/related", NEGATIVE),
    ("POST", "/related", NEGATIVE),
    ("GET", "/search", NEGATIVE),
]


COUNTS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module")
def api_schema(index_dir, request):
    with serve_in_thread(index_dir, reload_token=TOKEN, max_body_bytes=100_000) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")
    lines = [f"  {name}: {n} cases" for name, n in sorted(COUNTS.items())]
    text = f"API contract case counts ({sum(COUNTS.values())} in total):\n" + "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(text)


def test_every_operation_is_covered(api_schema):
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert found == set(OPERATIONS)


def run(name: str, strategy, mode) -> None:
    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case):
        # Invalid requests must get a documented 4xx, not a 5xx; which 4xx is not pinned (the
        # loaders accept legacy spellings and ignore unknown values, and a body over the limit is
        # 413, not 400).
        excluded = [schemathesis.checks.negative_data_rejection] if mode is NEGATIVE else []
        COUNTS[f"{name} ({mode.value})"] += 1
        case.call_and_validate(timeout=30, excluded_checks=excluded)

    check()


@pytest.mark.parametrize("method, path, mode", CASES, ids=lambda v: getattr(v, "value", v))
def test_operation_conforms_to_the_schema(api_schema, method, path, mode):
    run(f"{method} {path}", api_schema[path][method].as_strategy(generation_mode=mode), mode)


@pytest.mark.parametrize("path", ["/trials/{nct_id}/related", "/trials/{nct_id}"])
def test_indexed_trials_conform_to_the_schema(api_schema, index, path):
    # Generated NCT IDs are almost never in the index (404): here every one is, so the generated
    # filters and k meet real related lists.
    operation = api_schema[path]["GET"]
    ids = st.sampled_from([t.nct_id for t in index.trials])
    strategy = ids.flatmap(lambda nct_id: operation.as_strategy(path_parameters={"nct_id": nct_id}))
    run(f"GET {path}, indexed NCT IDs", strategy, POSITIVE)


# ------------------------------------------------------------------ size limits
def test_oversized_parameters_are_refused_and_the_server_goes_on(api_schema, index):
    base = api_schema.get_base_url()
    nct_id = index.trials[0].nct_id
    with httpx.Client(base_url=base, timeout=30) as http:
        too_many = http.get(f"/trials/{nct_id}/related", params=[("status", "COMPLETED")] * 21)
        assert too_many.status_code == 422 and "at most 20" in too_many.json()["detail"]
        long_id = http.get("/trials/" + "N" * 65 + "/related")
        assert long_id.status_code == 422 and "nct_id" in long_id.json()["detail"]
        huge_query = http.get(f"/trials/{nct_id}/related", params={"status": "x" * 60_000})
        assert 400 <= huge_query.status_code < 500
        huge_body = http.post("/related", content=b"[" * 5_000_000, headers={"Content-Type": "application/json"})
        assert huge_body.status_code == 413
        assert http.get(f"/trials/{nct_id}/related").status_code == 200
