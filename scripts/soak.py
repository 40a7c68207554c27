"""Soak test: the server under concurrent load for minutes, with one index rebuild and swap.

    python scripts/soak.py --duration 180 --concurrency 8

Builds index A from the small test fixtures (``tests/data``) into a temporary directory with
``related-trials build``, serves it with ``related-trials serve`` (a subprocess started by
:func:`similarity.service.server_process`: 127.0.0.1, a free port, reload token from
``$RELATED_TRIALS_RELOAD_TOKEN``, no CURRENT polling), and drives it with
``--concurrency`` httpx clients: ``GET /trials/{id}/related`` over A's trials, and every tenth
request a ``POST /related`` of an API v2 study (the sentence model embeds it). Halfway through,
index B (A's sources and more) is built into the same directory while the load goes on, then
swapped in with ``POST /admin/reload``. Every ``--interval`` seconds one row is recorded:
requests/s, p50 and p99 latency, errors, the server's resident memory (``/proc/PID/status``) and
the build it serves. Any answer but 200 counts as an error; so does a transport failure.

Unless ``--skip-tests``, it also runs the crash tests (``tests/test_crash.py``, its table of kill
points) and the fuzz and contract tests (their case counts) and puts their results in the report.
Writes Markdown to ``--out`` (default ``benchmarks/reliability.md``); exits 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

from similarity import TrialIndex
from similarity.service import RELOAD_TOKEN_ENV as TOKEN_ENV
from similarity.service import server_process

logger = logging.getLogger("soak")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SOURCES_A = [DATA / "flat-sample.jsonl", DATA / "legacy-sample.zip"]
SOURCES_B = [*SOURCES_A, DATA / "csv-sample.csv", DATA / "apiv2-page.json", ROOT / "data" / "seed" / "NCT02213705.json"]
POSTED = DATA / "apiv2-study.json"


@dataclasses.dataclass
class Window:
    """What happened in one interval of the soak."""

    start: float
    end: float = 0.0
    latencies: list[float] = dataclasses.field(default_factory=list)
    posts: list[float] = dataclasses.field(default_factory=list)  # of those, the POST /related ones
    errors: int = 0
    rss_mb: float = 0.0
    build: str = "?"
    events: list[str] = dataclasses.field(default_factory=list)

    def row(self, t0: float) -> str:
        n = len(self.latencies) + self.errors
        seconds = max(self.end - self.start, 1e-9)
        return (
            f"| {self.start - t0:.0f}-{self.end - t0:.0f} | {n} | {n / seconds:.1f} | {_ms(self.latencies)} "
            f"| {_ms(self.posts)} | {self.errors} | {self.rss_mb:.0f} | `{self.build}` | {'; '.join(self.events)} |"
        )


def _ms(latencies: list[float]) -> str:
    """``p50 / p99`` in milliseconds."""
    if not latencies:
        return "-"
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    return f"{p50:.0f} / {p99:.0f}"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``), 0 where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def build(sources: list[Path], index: Path, cache: Path) -> float:
    """``related-trials build`` in a subprocess; returns its seconds."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "similarity.cli", "build", *map(str, sources), "--index", str(index),
           "--cache-dir", str(cache), "-q"]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if done.returncode not in (0, 3):  # 3: built, some records skipped
        raise SystemExit(f"build failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


async def soak(base: str, pid: int, args, ids: list[str], index: Path, cache: Path, token: str) -> list[Window]:
    """Drive the server for ``args.duration`` seconds; rebuild and swap at the halfway mark."""
    document = json.loads(POSTED.read_text(encoding="utf-8"))
    windows = [Window(time.perf_counter())]
    stop_at = windows[0].start + args.duration
    limits = httpx.Limits(max_connections=args.concurrency + 2, max_keepalive_connections=args.concurrency + 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < stop_at:
                n, sent = sent, sent + 1
                t0 = time.perf_counter()
                try:
                    if n % 10 == 9:
                        response = await client.post("/related", json=document, params={"k": 5})
                    else:
                        response = await client.get(f"/trials/{ids[n % len(ids)]}/related", params={"k": 5})
                    ok = response.status_code == 200
                    if not ok:
                        logger.error("%s %s: %s", response.request.method, response.request.url, response.status_code)
                except httpx.HTTPError as exc:
                    logger.error("request failed: %s: %s", type(exc).__name__, exc)
                    ok = False
                window = windows[-1]
                if ok:
                    window.latencies.append(time.perf_counter() - t0)
                    if n % 10 == 9:
                        window.posts.append(time.perf_counter() - t0)
                else:
                    window.errors += 1

        async def swap() -> None:
            await asyncio.sleep(args.duration / 2)
            windows[-1].events.append("rebuild starts")
            seconds = await asyncio.to_thread(build, SOURCES_B, index, cache)
            windows[-1].events.append(f"rebuild done ({seconds:.1f} s)")
            response = await client.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                windows[-1].errors += 1
                windows[-1].events.append(f"reload FAILED: {response.status_code} {response.text[:200]}")
                return
            body = response.json()
            windows[-1].events.append(f"swap to `{body['index']['build']}` ({body['seconds']:.1f} s load)")

        async def sample() -> None:
            while time.perf_counter() < stop_at:
                await asyncio.sleep(min(args.interval, max(stop_at - time.perf_counter(), 0)))
                window = windows[-1]
                window.end = time.perf_counter()
                window.rss_mb = rss_mb(pid)
                try:
                    window.build = (await client.get("/health")).json()["index"]["build"]
                except (httpx.HTTPError, ValueError, KeyError):
                    window.errors += 1
                logger.info("%s", window.row(windows[0].start))
                if window.end < stop_at:
                    windows.append(Window(window.end))

        await asyncio.gather(sample(), swap(), *(worker() for _ in range(args.concurrency)))
    return windows


def run_tests(paths: list[str], *options: str) -> tuple[str, float]:
    """Run pytest on ``paths`` in a subprocess; returns its output and seconds."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, *paths]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    return done.stdout + done.stderr, time.perf_counter() - started


def summary_line(output: str) -> str:
    lines = [line.strip("= ") for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return re.sub(r" in [0-9.]+s.*$", "", lines[-1]) if lines else "no pytest summary line (see the run's output)"


def test_sections() -> list[str]:
    logger.info("running the crash tests")
    crash, crash_s = run_tests(["tests/test_crash.py"], "-s")
    logger.info("running the fuzz and contract tests")
    fuzz, fuzz_s = run_tests(["tests/test_fuzz_loaders.py", "tests/test_fuzz_api.py", "tests/test_api_contract.py"])
    table = [line for line in crash.splitlines() if line.startswith("|")]
    counts = [line for line in fuzz.splitlines() if re.match(r"^(\S.*case counts|  \S.*: \d+ cases)", line)]
    return [
        "## Crash tests: builds killed with SIGKILL",
        "",
        "`tests/test_crash.py` builds index A with the CLI, then kills builds of another index B into the"
        " same directory: at fixed times, the moment a hidden build directory appears, and at each step of"
        " `TrialIndex.save` (a build that kills itself there). After every kill the directory must load A"
        " with the same related lists, and CURRENT must never name a hidden (half-written) directory."
        " Hidden directories left by a kill are removed by the next save.",
        "",
        *table,
        "",
        f"Result: {summary_line(crash)} ({crash_s:.0f} s).",
        "",
        "## Fuzz and contract tests",
        "",
        "`tests/test_fuzz_loaders.py` (every loader), `tests/test_fuzz_api.py` (`POST /related` bodies) and"
        " `tests/test_api_contract.py` (schemathesis on `/openapi.json`, live server on loopback; no 5xx,"
        " every response matching the schema):",
        "",
        "```",
        *counts,
        "```",
        "",
        f"Result: {summary_line(fuzz)} ({fuzz_s:.0f} s).",
        "",
    ]


def report(windows: list[Window], args, info: dict, builds: dict, command: str, tests: list[str]) -> str:
    t0 = windows[0].start
    latencies = [x for w in windows for x in w.latencies]
    posts = [x for w in windows for x in w.posts]
    errors = sum(w.errors for w in windows)
    total = len(latencies) + errors
    seconds = windows[-1].end - t0
    rss = [w.rss_mb for w in windows if w.rss_mb]
    cpu = platform.processor() or platform.machine()
    memory = (
        f"Server RSS {rss[0]:.0f} MiB at the first sample, {max(rss):.0f} MiB at most, {rss[-1]:.0f} MiB at the end."
        if rss else "No RSS samples (no /proc)."
    )
    return "\n".join([
        "# Reliability figures",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/soak.py`.",
        "",
        f"- Machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs (shared by the server, the clients"
        f" and the rebuild); Python {platform.python_version()}",
        f"- Index A: {info['count']} trials from `tests/data` (built in {builds['a']:.1f} s), model"
        f" `{info['model']}`; index B: A's sources and more, built into the same directory under load",
        "- Server: `related-trials serve --watch 0` (one uvicorn process) on 127.0.0.1, reload token from"
        f" `${TOKEN_ENV}`; clients: {args.concurrency} httpx async workers in another process, keep-alive",
        "- Load: `GET /trials/{id}/related?k=5` over A's trials; every tenth request `POST /related` with an"
        " API v2 study (embedded by the model). Any status but 200, or a transport error, is an error.",
        "- Halfway: `related-trials build` of B into the served directory, then `POST /admin/reload`",
        "",
        "## Soak",
        "",
        f"{total:,} requests in {seconds:.0f} s: {total / seconds:.1f} requests/s; latency p50 / p99 {_ms(latencies)} ms"
        f" (`POST /related` alone: {_ms(posts)} ms); **{errors} errors**. {memory}",
        "",
        "| seconds | requests | requests/s | all: p50 / p99 ms | POST: p50 / p99 ms | errors | RSS MiB "
        "| build served | events |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
        *(w.row(t0) for w in windows),
        "",
        "Latency rises while B is built: the rebuild (a second Python process embedding trials) shares"
        " the CPUs with the server and the clients. The swap itself loads B completely (index, ranker,"
        " model, one warm-up query) beside A before one reference is replaced; requests under way finish"
        " on A.",
        "",
        *tests,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per table row (default 10)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the crash, fuzz and contract tests")
    parser.add_argument("--out", default="benchmarks/reliability.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.interval <= 0:
        parser.error("--duration, --concurrency and --interval must be positive")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    command = " ".join(["python scripts/soak.py", shlex.join(argv if argv is not None else sys.argv[1:])]).strip()

    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        index, cache = Path(work) / "index", Path(work) / "cache"
        builds = {"a": build(SOURCES_A, index, cache)}
        ids = list(TrialIndex.load(index).rows)
        token = secrets.token_urlsafe(24)
        logger.info("serving %d trials for %.0f s", len(ids), args.duration)
        with server_process(index, env={TOKEN_ENV: token}, args=("--watch", "0", "--workers", "1")) as server:
            logger.info("serving on %s", server.url)
            info = httpx.get(f"{server.url}/health").json()["index"]
            windows = asyncio.run(soak(server.url, server.pid, args, ids, index, cache, token))
    tests = [] if args.skip_tests else test_sections()
    text = report(windows, args, info, builds, command, tests)
    write_report(args.out, text, command)
    return 1 if any(w.errors for w in windows) else 0


if __name__ == "__main__":
    sys.exit(main())
