"""Load figures for the HTTP API: requests/s and latency of the related list vs. a static file.

    python scripts/load_test.py --index indexes/demo --requests 3000 --concurrency 8

Starts ``related-trials serve`` on 127.0.0.1 (a free port) in a subprocess with
:func:`similarity.service.server_process`, which waits for ``/health``, then drives two endpoints
in turn with an asyncio httpx client, loopback only:

- ``GET /widget.js``: a plain static file through the same server, the baseline;
- ``GET /trials/{id}/related?k=K``: cycling over the indexed NCT IDs (shuffled, seeded), no
  ``If-None-Match``, so every request really ranks.

Each run stops after ``--requests`` requests or ``--duration-limit`` seconds, whichever first.
Writes a Markdown table (requests/s, p50 and p99 latency in ms, errors) with the machine, date
and command to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import os
import platform
import random
import shlex
import sys
import time

import httpx
import numpy as np
from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

logger = logging.getLogger("load_test")


@dataclasses.dataclass
class Run:
    name: str
    latencies: list[float]
    errors: int
    seconds: float

    def row(self, concurrency: int) -> str:
        ms = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        n = len(self.latencies) + self.errors
        return (
            f"| {self.name} | {n} | {concurrency} | {n / self.seconds:,.0f} | "
            f"{np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} | {self.errors} |"
        )


async def drive(base: str, name: str, paths: list[str], n: int, concurrency: int, limit_s: float) -> Run:
    """Send up to ``n`` GETs (cycling over ``paths``) from ``concurrency`` workers for at most ``limit_s``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for path in paths[: concurrency * 2]:  # warm up connections and caches, not counted
            await client.get(path)
        started = time.perf_counter()
        deadline = started + limit_s

        async def worker():
            nonlocal sent, errors
            while sent < n and time.perf_counter() < deadline:
                path = paths[sent % len(paths)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(name, latencies, errors, seconds)


def rank_in_process(index, ids: list[str], n: int, k: int, limit_s: float) -> Run:
    """``Ranker.related`` called directly, one thread, no HTTP: the ranking's share of a request."""
    import faiss

    from similarity import Ranker

    faiss.omp_set_num_threads(1)  # as `related-trials serve` does
    ranker = Ranker(index)
    for nct_id in ids[:20]:
        ranker.related(nct_id, k)
    latencies = []
    started = time.perf_counter()
    while len(latencies) < n and time.perf_counter() - started < limit_s:
        t0 = time.perf_counter()
        ranker.related(ids[len(latencies) % len(ids)], k)
        latencies.append(time.perf_counter() - t0)
    return Run(f"`Ranker.related(id, k={k})` in-process, 1 thread, no HTTP", latencies, 0, time.perf_counter() - started)


def report(runs: list[Run], args, index_info: dict, command: str) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# HTTP API load figures",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/load_test.py`.",
        "",
        f"- Machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs (shared by server and client);"
        f" Python {platform.python_version()}",
        f"- Index: {index_info['count']:,} trials, model `{index_info['model']}`, backend `{index_info['backend']}`",
        "- Server: `related-trials serve` (one uvicorn worker, one process) on 127.0.0.1;"
        " client: httpx `AsyncClient` in another process, keep-alive, loopback only",
        f"- Related list: `GET /trials/{{id}}/related?k={args.k}`, cycling over all indexed NCT IDs"
        " (shuffled), no `If-None-Match`, so every request ranks; baseline: `GET /widget.js`"
        " (static file, same server)",
        f"- Each run: at most {args.requests:,} requests or {args.duration_limit:g} s, after"
        f" {2 * args.concurrency} warm-up requests",
        "",
        "| endpoint | requests | concurrency | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(run.row(args.concurrency if i < 2 else 1) for i, run in enumerate(runs)),
        "",
        "The static file is the ceiling of this client and server on this machine (the Python client"
        " takes a large share of the CPUs). The last row times the ranking alone: most of a related"
        " list's time is ranking (FAISS candidates, the blend over them, the explanations), not HTTP.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory to serve")
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint (default 3000)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent requests (default 8)")
    parser.add_argument("--duration-limit", type=float, default=60.0, help="seconds per endpoint at most (default 60)")
    parser.add_argument("-k", "--k", type=int, default=5, help="related trials per list (default 5)")
    parser.add_argument("--out", default="benchmarks/api.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.duration_limit <= 0:
        parser.error("--requests, --concurrency and --duration-limit must be positive")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    command = "python scripts/load_test.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    from similarity import TrialIndex
    from similarity.service import server_process

    index = TrialIndex.load(args.index)
    ids = list(index.rows)
    random.Random(0).shuffle(ids)
    logger.info("starting the server")
    with server_process(args.index) as server:
        base = server.url
        logger.info("serving on %s", base)
        index_info = httpx.get(f"{base}/health").json()["index"]
        runs = []
        for name, paths in (
            ("`GET /widget.js` (static baseline)", ["/widget.js"]),
            (f"`GET /trials/{{id}}/related?k={args.k}`", [f"/trials/{i}/related?k={args.k}" for i in ids]),
        ):
            run = asyncio.run(drive(base, name, paths, args.requests, args.concurrency, args.duration_limit))
            logger.info("%s", run.row(args.concurrency))
            runs.append(run)
    runs.append(rank_in_process(index, ids, args.requests, args.k, args.duration_limit))
    logger.info("%s", runs[-1].row(1))
    text = report(runs, args, index_info, command)
    write_report(args.out, text, command)
    return 1 if any(run.errors for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
