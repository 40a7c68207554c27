"""Cost of one related list: the shipped ranker against the previous default, same run, same machine.

    python scripts/list_cost.py --index indexes/demo --previous-index indexes/previous

The previous default is an index of the previous layout (four fields, no ``text``; build it with
``related-trials build ... --fields brief_title,conditions,interventions,summary``) ranked with the cascade blend of
``git show REV:similarity/default_blend.json``; the shipped one is the current build with its
manifest's blend. Both rank the related lists of the same random indexed trials (``-n``), warm,
one after the other, alternating in rounds; the table goes to ``benchmarks/list_cost.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from similarity import Ranker, TrialIndex
from similarity.ranking import blend_from_dict


def _times(ranker, ids) -> np.ndarray:
    out = []
    for q in ids:
        start = time.perf_counter()
        ranker.related(q, k=10)
        out.append(time.perf_counter() - start)
    return np.array(out) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="indexes/demo")
    parser.add_argument("--previous-index", required=True, help="an index of the same trials in the previous layout")
    parser.add_argument("--previous-blend-rev", default="8395a29", help="git revision of the previous default blend")
    parser.add_argument("-n", type=int, default=300, help="related lists per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/list_cost.md")
    args = parser.parse_args(argv)
    shipped = Ranker(TrialIndex.load(args.index))
    old_index = TrialIndex.load(args.previous_index)
    blend = json.loads(subprocess.run(["git", "show", f"{args.previous_blend_rev}:similarity/default_blend.json"],
                                      capture_output=True, text=True, check=True).stdout)
    previous = Ranker(old_index, blend_from_dict(blend))
    rng = np.random.default_rng(0)
    ids = [shipped.index.nct_id(int(r)) for r in rng.choice(len(shipped.index), args.n, replace=False)]
    ids = [q for q in ids if q in old_index]
    _times(shipped, ids[:20]), _times(previous, ids[:20])  # warm-up
    runs = {"previous default (4 fields, cascade)": [], "shipped (5 fields, fusion)": []}
    for _ in range(args.rounds):
        runs["previous default (4 fields, cascade)"].append(_times(previous, ids))
        runs["shipped (5 fields, fusion)"].append(_times(shipped, ids))
    lines = [
        "# Cost of one related list: shipped ranker vs the previous default",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {platform.node() or 'unknown'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- {len(ids)} random indexed trials of a {len(shipped.index)}-trial index, k=10, 300 candidates, "
        f"{args.rounds} alternating rounds (warm, in-process, one thread of the caller)",
        "",
        "| ranker | p50 ms | p90 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|",
    ]
    base = None
    for name, parts in runs.items():
        t = np.concatenate(parts)
        base = base or float(np.median(t))
        lines.append(f"| {name} | {np.median(t):.2f} | {np.percentile(t, 90):.2f} | {np.percentile(t, 99):.2f} | "
                     f"{t.mean():.2f} |")
    t_new = np.median(np.concatenate(runs["shipped (5 fields, fusion)"]))
    lines += ["", f"Ratio of medians, shipped / previous: {t_new / base:.2f}x", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
