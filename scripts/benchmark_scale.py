"""Write benchmarks/scale.md: the two ways of scaling out, measured in one run on this machine.

    python scripts/benchmark_scale.py            # Ray Data builds, then PostgreSQL + pgvector
    python scripts/benchmark_scale.py --skip pg  # one part only (ray or pg)

Runs ``scripts/scale_ray.py`` (the Ray Data build against the local build of the same trials, 1 and
2 workers, the projected registry build time) and ``scripts/scale_pg.py`` (pgvector against the
FAISS backends at 100,000 vectors, filtered k-NN, recall on real vectors, two replicas through a
switch) one after the other, each in its own process so that neither measures the other's memory
or threads, and joins their reports under one heading. Each part also keeps its own file
(``benchmarks/scale-ray.md``, ``benchmarks/scale-postgres.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "ray": ("scale_ray.py", ROOT / "benchmarks" / "scale-ray.md"),
    "pg": ("scale_pg.py", ROOT / "benchmarks" / "scale-postgres.md"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", choices=sorted(PARTS), action="append", default=[], help="leave a part out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "scale.md"))
    args = parser.parse_args(argv)
    sections = []
    for name, (script, out) in PARTS.items():
        if name in args.skip:
            continue
        command = [sys.executable, str(ROOT / "scripts" / script), "--out", str(out)]
        print(f"running {' '.join(shlex.quote(c) for c in command)}", file=sys.stderr, flush=True)
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        if done.returncode != 0:
            print(f"{script} failed (exit {done.returncode}); {args.out} not written", file=sys.stderr)
            return done.returncode
        body = out.read_text(encoding="utf-8")
        sections.append("#" + body if body.startswith("# ") else body)  # one level down
    if not sections:
        parser.error("every part skipped")
    head = (f"# Scaling out: Ray Data builds and PostgreSQL + pgvector\n\n"
            f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.platform()}, "
            f"{os.cpu_count()} CPUs; one part after the other, each in its own process. See README "
            f"\"Scaling out\" for when to use which.\n")
    write_report(args.out, "\n".join([head, *sections]),
                 "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
