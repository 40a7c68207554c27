"""Load figures for the HTTP API, driven by wrk: the related list against the server's own floor.

    python scripts/load_test.py --index indexes/demo --duration 15 --connections 16

Starts ``related-trials serve`` as the README runs it (one worker per core) on 127.0.0.1 (a free
port) with :func:`similarity.service.server_process`, then drives it with Debian's ``wrk`` (apt
package ``wrk``; ``make wrk`` installs it), 1 thread and ``--connections`` keep-alive connections,
loopback only, each endpoint in turn in the same run:

- ``GET /health``: the server's floor on this machine (no index work);
- ``GET /trials/{id}/related?k=K``: cycling over all indexed NCT IDs (shuffled, seeded), no
  ``If-None-Match``, so every request is answered (from the stored lists where the index has them);
- ``GET /trials/{id}/related?k=11``: the same, one trial beyond the stored lists, so every request
  ranks live: what the stored lists save;
- ``POST /related?k=K`` with trial documents that are not indexed (the seed study under another NCT
  ID, in 1,000 copies whose texts differ, so nothing is embedded twice): embedding and ranking, with
  ``--post-connections`` connections; once as served (each document embedded alone, the default)
  and once by a second server started with ``--batch-rows 32`` (concurrent documents embedded
  together), in the same run.

wrk reports requests/s, latency percentiles and errors (non-2xx answers, socket errors and
timeouts) through a Lua ``done`` hook. Writes a Markdown table with the machine, date and command
to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

logger = logging.getLogger("load_test")

DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "seconds": %f, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

LINES = r"""
local items = {}
for line in io.lines("%s") do items[#items + 1] = line end
local i = 0
request = function()
  i = i %% #items + 1
  return %s
end
"""


def cycle(path) -> str:
    """A wrk script requesting the paths of the file ``path`` (one a line) in turn."""
    return LINES % (path, "wrk.format(nil, items[i])")


def posts(path) -> str:
    """A wrk script posting the JSON bodies of the file ``path`` (one a line) in turn."""
    return LINES % (path, 'wrk.format("POST", nil, {["Content-Type"] = "application/json"}, items[i])')


def document_variants(document: dict, n: int) -> list[dict]:
    """``n`` copies of an API v2 study, each with its own texts (title, summary, conditions,
    interventions end in `` (copy i)``), so that no two requests embed the same strings."""
    out = []
    for i in range(n):
        doc = json.loads(json.dumps(document))
        p = doc["protocolSection"]
        tag = f" (copy {i})"
        p["identificationModule"]["briefTitle"] += tag
        if "descriptionModule" in p and p["descriptionModule"].get("briefSummary"):
            p["descriptionModule"]["briefSummary"] += tag
        if "conditionsModule" in p:
            p["conditionsModule"]["conditions"] = [c + tag for c in p["conditionsModule"].get("conditions", [])]
        for intervention in p.get("armsInterventionsModule", {}).get("interventions", []):
            intervention["name"] += tag
        out.append(doc)
    return out


def run_wrk(url: str, script: str, *, duration: float, connections: int, workdir: Path, name: str) -> dict:
    """One wrk run (1 thread); returns its counts, rate and latency percentiles."""
    lua = workdir / f"{name}.lua"
    lua.write_text(script + DONE)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s", "-s", str(lua), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    stats = json.loads(line.removeprefix("WRK_JSON "))
    stats["errors"] = sum(stats[k] for k in ("connect", "read", "write", "status", "timeout"))
    stats["rate"] = stats["requests"] / stats["seconds"]
    stats["connections"] = connections
    return stats


def row(name: str, s: dict, floor: dict | None) -> str:
    share = f"{s['rate'] / floor['rate']:.2f}x" if floor else ""
    return (f"| {name} | {s['connections']} | {s['requests']:,} | {s['rate']:,.0f} | {s['p50_us'] / 1000:.1f} | "
            f"{s['p99_us'] / 1000:.1f} | {s['errors']} | {share} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="index directory to serve")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per endpoint (default 15)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--post-connections", type=int, default=8, help="connections of the POST run (default 8)")
    parser.add_argument("--workers", type=int, default=None, help="server workers (default: serve's, one per core)")
    parser.add_argument("-k", "--k", type=int, default=5, help="related trials per list (default 5)")
    parser.add_argument("--document", default="data/seed/NCT02213705.json", help="API v2 study posted (its NCT ID is changed)")
    parser.add_argument("--out", default="benchmarks/api.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.post_connections < 1:
        parser.error("--duration, --connections and --post-connections must be positive")
    if shutil.which("wrk") is None:
        parser.error("needs Debian's wrk: apt-get install wrk (or make wrk)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    command = "python scripts/load_test.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    from similarity import TrialIndex
    from similarity.service import server_process

    index = TrialIndex.load(args.index)
    stored = index.related_lists.k if index.related_lists is not None else 0
    ids = list(index.rows)
    random.Random(0).shuffle(ids)
    document = json.loads(Path(args.document).read_text())
    document["protocolSection"]["identificationModule"]["nctId"] = "NCT99999999"  # not indexed: embedded
    serve_args = ("--workers", str(args.workers)) if args.workers else ()
    with tempfile.TemporaryDirectory() as tmp, server_process(args.index, args=serve_args) as server:
        workdir = Path(tmp)
        info = httpx.get(f"{server.url}/health").json()["index"]
        paths = {}
        for name, k in (("related", args.k), ("live", max(stored, args.k) + 1)):
            (workdir / f"{name}.txt").write_text("\n".join(f"/trials/{i}/related?k={k}" for i in ids) + "\n")
            paths[name] = cycle(workdir / f"{name}.txt")
        (workdir / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in document_variants(document, 1000)))
        runs = {}
        plan = [("health", "", args.connections, "/health"), ("related", paths["related"], args.connections, ""),
                ("live", paths["live"], args.connections, ""),
                ("post", posts(workdir / "docs.jsonl"), args.post_connections, f"/related?k={args.k}")]
        for name, script, connections, path in plan:
            runs[name] = run_wrk(server.url + path, script, duration=args.duration, connections=connections,
                                 workdir=workdir, name=name)
            logger.info("%s: %s", name, row(name, runs[name], None))
        workers = args.workers or os.cpu_count()
        with server_process(args.index, args=(*serve_args, "--batch-rows", "32")) as batching:  # the first idles
            runs["post_batched"] = run_wrk(batching.url + f"/related?k={args.k}", posts(workdir / "docs.jsonl"),
                                           duration=args.duration, connections=args.post_connections,
                                           workdir=workdir, name="post_batched")
            logger.info("post, batched: %s", row("post_batched", runs["post_batched"], None))
    live_k = max(stored, args.k) + 1
    text = "\n".join([
        "# HTTP API load figures",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `scripts/load_test.py`.",
        "",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        f" shared by the server and wrk; Python {platform.python_version()}",
        f"- Index: {info['count']:,} trials, model `{info['model']}`, backend `{info['backend']}`, related lists"
        f" stored with the build: {stored or 'none'}",
        f"- Server: `related-trials serve --index DIR` as the README runs it ({workers} uvicorn workers) on"
        " 127.0.0.1; client: `wrk -t1` on the same machine, keep-alive, loopback only",
        f"- Related lists cycle over all {len(ids):,} indexed NCT IDs (shuffled), no `If-None-Match`; each row"
        f" {args.duration:g} s, one after the other in one run; `POST /related` sends one API v2 study that is"
        " not in the index (embedded on every request)",
        "",
        "| request | connections | requests | requests/s | p50 ms | p99 ms | errors | rate vs `/health` |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("`GET /health` (the server's floor)", runs["health"], None),
        row(f"`GET /trials/{{id}}/related?k={args.k}`" + (" (stored lists)" if stored else ""), runs["related"], runs["health"]),
        row(f"`GET /trials/{{id}}/related?k={live_k}` (ranked live)", runs["live"], runs["health"]),
        row(f"`POST /related?k={args.k}` (a new document)", runs["post"], runs["health"]),
        row(f"`POST /related?k={args.k}`, a second server with `--batch-rows 32` (concurrent documents embedded "
            "together)", runs["post_batched"], runs["health"]),
        "",
    ])
    write_report(args.out, text, command)
    return 1 if any(r["errors"] for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
