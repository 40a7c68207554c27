"""Property-based fuzzing of the API bodies: whatever ``POST /related`` is sent, the answer is a
related list (200), or a JSON ``{"detail": message}`` with 413 or 422, never a 5xx.

Bodies: API v2 studies and flat records from the loader fuzz's strategies (random types in every
position), the same documents damaged as bytes (truncated, a byte flipped, invalid UTF-8), deep
nesting, huge numbers, and random bytes. A 200 answers for the document's own NCT ID and lists at
most ``k`` trials, none of them the query. The app runs in-process (TestClient) on the session's
small index; the counts per kind of body are printed at the end of the module.
"""

from __future__ import annotations

import collections
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_loaders import flat_records, json_values, studies

from similarity.service import create_app

pytestmark = pytest.mark.slow

LIMIT = 50_000
CASES: collections.Counter[str] = collections.Counter()
ANSWERED: collections.Counter[str] = collections.Counter()  # of those, how many got a list (200)

FUZZ = settings(
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture(scope="module")
def client(index_dir, request):
    with TestClient(create_app(index_dir, max_body_bytes=LIMIT)) as client:
        yield client
    lines = [f"  {name}: {n} cases, {ANSWERED[name]} got a related list" for name, n in sorted(CASES.items())]
    text = f"API body fuzz case counts ({sum(CASES.values())} in total):\n" + "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(text)


def post(client, kind: str, body: bytes, k: int = 5, doc=None) -> None:
    CASES[kind] += 1
    response = client.post("/related", params={"k": k}, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 413, 422), (response.status_code, response.text[:300])
    payload = response.json()
    if response.status_code != 200:
        assert set(payload) == {"detail"} and isinstance(payload["detail"], str) and payload["detail"]
        if len(body) > LIMIT:
            assert response.status_code == 413
        return
    ANSWERED[kind] += 1
    assert len(body) <= LIMIT
    ids = [item["nct_id"] for item in payload["related"]]
    assert len(ids) <= k and len(set(ids)) == len(ids) and payload["nct_id"] not in ids
    if isinstance(doc, dict):
        given_id = doc.get("nct_id") or doc["protocolSection"]["identificationModule"]["nctId"]
        assert payload["nct_id"] == given_id.strip()


def encode(doc, ascii_only: bool) -> bytes:
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


documents = st.one_of(studies, flat_records)


@settings(FUZZ, max_examples=600)
@given(doc=documents, ascii_only=st.booleans(), k=st.integers(1, 20))
def test_documents_with_random_types(client, doc, ascii_only, k):
    post(client, "document (random types)", encode(doc, ascii_only), k, doc)


@settings(FUZZ, max_examples=400)
@given(doc=documents, cut=st.floats(0, 1), flip=st.integers(0, 2**16), byte=st.integers(0, 255))
def test_damaged_documents(client, doc, cut, flip, byte):
    body = bytearray(encode(doc, False))
    body = body[: int(len(body) * cut)] if cut < 0.5 else body
    if body:
        body[flip % len(body)] = byte
    post(client, "document (damaged bytes)", bytes(body))


@settings(FUZZ, max_examples=300)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(1, 20_000).map(lambda n: b'{"nct_id": "NCT00000102", "enrollment": ' + b"9" * n + b"}"),
        st.integers(LIMIT - 10, LIMIT + 10).map(lambda n: b" " * n + b"{}"),
    )
)
def test_bodies_that_are_not_documents(client, body):
    post(client, "not a document (bytes, JSON values, nesting, size)", body)
