"""Hot swap: a rebuilt index is picked up by the running server without failing any request.

Index A (the sample trials less a few) is served on loopback; client threads hammer related lists
while index B (all the sample trials) is built into the same directory and swapped in. Every
answer must be A's or B's whole (never an error, never a mix), and every answer to a request sent
after the reload returned must be B's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from similarity import InvalidParameter, Ranker, TrialIndex, build_index
from similarity.service import create_app, serve_in_thread

pytestmark = pytest.mark.slow

TOKEN = "test-reload-token-0123456789"
HELD_BACK = 6  # trials of B that A lacks


@pytest.fixture(scope="module")
def builds(sample_trials, index_dir):
    """Indexes A and B, built in memory once (embeddings from the session index's cache)."""
    cache = str(index_dir / "cache")
    a = build_index(sample_trials[:-HELD_BACK], cache_dir=cache)
    b = build_index(sample_trials, cache_dir=cache)
    return a, b


@pytest.fixture
def served_a(builds, tmp_path) -> Path:
    path = tmp_path / "index"
    builds[0].save(path)
    return path


def answer(items) -> tuple:
    """A related list reduced to what must match exactly: ids and scores."""
    return tuple((r["nct_id"], round(r["score"], 5)) for r in items)


def expected(index: TrialIndex, queries) -> dict[str, tuple]:
    ranker = Ranker(index)
    return {q: answer([r.to_dict() for r in ranker.related(q, 5)]) for q in queries}


# ------------------------------------------------------------------ the endpoint's protection
def test_reload_needs_the_bearer_token(served_a):
    with TestClient(create_app(served_a, reload_token=TOKEN)) as client:
        missing = client.post("/admin/reload")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        wrong = client.post("/admin/reload", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 403 and wrong.json() == {"detail": "wrong reload token"}
        same = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert same.status_code == 200
        body = same.json()
        assert set(body) == {"reloaded", "previous", "index", "seconds"}
        assert body["reloaded"] is False and body["previous"] == body["index"]["build"]
        assert "/admin/reload" in client.get("/openapi.json").json()["paths"]


def test_reload_is_off_without_a_token(served_a):
    with TestClient(create_app(served_a)) as client:
        response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404 and "--reload-token" in response.json()["detail"]
        assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("token", ["", "short", " " * 20])
def test_short_tokens_are_refused(served_a, token):
    with pytest.raises(InvalidParameter, match="at least 16 characters"):
        create_app(served_a, reload_token=token)


# ------------------------------------------------------------------ the swap under load
def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_swap_under_concurrent_load_fails_no_request(builds, served_a, sample_trials, index_dir):
    a, _ = builds
    queries = [t.nct_id for t in sample_trials[:8]]
    want_a = expected(TrialIndex.load(served_a), queries)
    records: list[tuple[float, str, tuple]] = []  # (sent at, query, answer)
    errors: list[str] = []
    stop = threading.Event()

    def client(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            i = offset
            while not stop.is_set():
                q = queries[i % len(queries)]
                i += 1
                sent = time.monotonic()
                try:
                    response = http.get(f"/trials/{q}/related", params={"k": 5})
                except httpx.HTTPError as exc:
                    errors.append(f"{q}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    errors.append(f"{q}: {response.status_code} {response.text[:200]}")
                    continue
                records.append((sent, q, answer(response.json()["related"])))

    with serve_in_thread(served_a, reload_token=TOKEN) as base:
        threads = [threading.Thread(target=client, args=(base, n)) for n in range(4)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(records) >= 20)
        # Rebuild B into the directory being served (embedding, writing, switching CURRENT) ...
        b = build_index(sample_trials, cache_dir=str(index_dir / "cache"))
        b.save(served_a)
        # ... then swap it in while the clients go on.
        reload = httpx.post(f"{base}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        swapped_at = time.monotonic()
        wait_for(lambda: sum(r[0] > swapped_at for r in list(records)) >= 20)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        health = httpx.get(f"{base}/health").json()

    assert reload.status_code == 200, reload.text
    assert reload.json()["reloaded"] is True
    assert health["index"]["fingerprint"] == b.fingerprint != a.fingerprint
    assert health["index"]["build"] == b.path.name and health["reloads"] == 1
    want_b = expected(TrialIndex.load(served_a), queries)
    assert any(want_a[q] != want_b[q] for q in queries)
    assert not errors, errors[:5]
    before = [r for r in records if r[0] < swapped_at]
    after = [r for r in records if r[0] > swapped_at]
    assert len(before) >= 20 and len(after) >= 20, (len(before), len(after))
    for sent, q, got in records:
        assert got in (want_a[q], want_b[q]), q  # one build's answer whole, never a mix
    assert all(got == want_b[q] for _, q, got in after)
    assert any(got == want_a[q] != want_b[q] for _, q, got in before)


def test_watch_picks_up_a_new_build_and_the_etag_changes(builds, served_a):
    a, b = builds
    query = f"/trials/{a.trials[0].nct_id}/related"
    with TestClient(create_app(served_a, watch_seconds=0.1)) as client:
        first = client.get(query)
        assert first.status_code == 200
        build_a = client.get("/health").json()["index"]["build"]
        b.save(served_a)
        deadline = time.monotonic() + 30
        while client.get("/health").json()["index"]["build"] == build_a:
            assert time.monotonic() < deadline, "the watch did not swap in the new build"
            time.sleep(0.1)
        second = client.get(query, headers={"If-None-Match": first.headers["etag"]})
        assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
        health = client.get("/health").json()
        assert health["index"]["fingerprint"] == b.fingerprint and health["reloads"] == 1


def test_a_build_that_fails_to_load_leaves_the_old_one_serving(served_a):
    with TestClient(create_app(served_a, reload_token=TOKEN)) as client:
        good = client.get("/health").json()["index"]
        broken = served_a / "builds" / "20990101T000000-broken"
        broken.mkdir()
        (broken / "manifest.json").write_text("{not json")
        (served_a / "CURRENT").write_text(broken.name)
        response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 500
        assert f"still serving build {good['build']}" in response.json()["detail"]
        assert "unreadable manifest" in response.json()["detail"]
        health = client.get("/health").json()
        assert health["index"] == good and "unreadable manifest" in health["reload_error"]
        assert client.get("/trials/NCT00000102/related").status_code == 200
        (served_a / "CURRENT").write_text(good["build"])
        assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/health").json()["reload_error"] is None


def test_sighup_reloads_the_cli_server(builds, served_a):
    _, b = builds
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "similarity.cli", "serve", "--index", str(served_a), "--port", "0", "--watch", "0", "--workers", "1"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = None
        deadline = time.monotonic() + 120
        while base is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line or server.poll() is None, "the server exited"
            if found := re.search(r"Uvicorn running on (http://\S+)", line):
                base = found.group(1)
        assert base, "the server did not start"
        threading.Thread(target=server.stderr.read, daemon=True).start()  # keep the pipe drained
        build_a = httpx.get(f"{base}/health").json()["index"]["build"]
        b.save(served_a)
        time.sleep(0.5)
        assert httpx.get(f"{base}/health").json()["index"]["build"] == build_a  # no watch: no swap
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{base}/health").json())["index"]["build"] == build_a:
            assert time.monotonic() < deadline, "SIGHUP did not swap in the new build"
            time.sleep(0.2)
        assert health["index"]["fingerprint"] == b.fingerprint and health["reloads"] == 1
        assert server.poll() is None  # SIGHUP did not stop it
    finally:
        server.terminate()
        server.wait(timeout=30)



@pytest.mark.parametrize(
    "options, message",
    [
        (["--reload-token", "short"], "reload_token must be at least 16 characters"),
        (["--watch", "-1"], "--watch must be >= 0 seconds"),
    ],
)
def test_serve_refuses_bad_reload_options_in_one_line(capsys, served_a, options, message, monkeypatch):
    from similarity.cli import main

    monkeypatch.delenv("RELATED_TRIALS_RELOAD_TOKEN", raising=False)
    assert main(["serve", "--index", str(served_a), *options]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
