"""Write benchmarks/encoder.md: cold builds by runtime against the naive encode, whole processes.

    python scripts/benchmark_encoder.py                 # 400 random corpus trials, 2 rounds
    python scripts/benchmark_encoder.py --trials 1000 --rounds 3

Every side is a fresh process timed from start to exit, on the same trials (written once to a JSONL
file), in alternating order each round so that a change in the machine's load hits all sides:

- naive: one concatenated text per trial through ``SentenceTransformer.encode`` (batch 16, PyTorch),
  the baseline of issue 16;
- naive, onnx-int8: the same encode with the transformer in ONNX Runtime, int8 (the encoder alone);
- ``related-trials build`` with an empty embedding cache (cold), default fields, for each runtime;
- ``related-trials build --fast`` (no summary, no whole text), onnx-int8.

The ONNX export is made (and cached) before the first round, as on any machine after its first
build; its one-off cost is reported apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

ROOT = Path(__file__).resolve().parent.parent

NAIVE = """
import sys
from similarity import load_trials
from similarity.features import concatenated_text, load_sentence_model
trials = load_trials([sys.argv[1]])
model = load_sentence_model("all-MiniLM-L6-v2", runtime=sys.argv[2])
model.encode([concatenated_text(t) for t in trials], batch_size=16, normalize_embeddings=True)
"""


def _sides(trials_file: Path, work: Path) -> dict[str, list[str]]:
    build = [sys.executable, "-m", "similarity.cli", "build", str(trials_file), "--quiet"]
    return {
        "naive (PyTorch)": [sys.executable, "-c", NAIVE, str(trials_file), "torch"],
        "naive, onnx-int8": [sys.executable, "-c", NAIVE, str(trials_file), "onnx-int8"],
        "build, default fields, torch": [*build, "--runtime", "torch", "--index", str(work / "i-torch")],
        "build, default fields, onnx-int8": [*build, "--runtime", "onnx-int8", "--index", str(work / "i-int8")],
        "build --fast, onnx-int8": [*build, "--fast", "--runtime", "onnx-int8", "--index", str(work / "i-fast")],
    }


def _run(argv: list[str], cache: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if "build" in argv:
        argv = [*argv, "--cache-dir", str(cache)]  # empty: a cold build
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{shlex.join(argv[:6])}... failed:\n{done.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT / "data" / "ctgov-legacy-xml-sample.zip"))
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "encoder.md"))
    args = parser.parse_args(argv)

    from similarity import load_trials
    from similarity.features import load_sentence_model

    trials = load_trials([args.corpus])
    trials = random.Random(args.seed).sample(trials, min(args.trials, len(trials)))
    started = time.perf_counter()
    load_sentence_model("all-MiniLM-L6-v2", runtime="onnx-int8")  # the export, cached once per machine
    export_s = time.perf_counter() - started
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="encoder-") as tmp:
        work = Path(tmp)
        trials_file = work / "trials.jsonl"
        trials_file.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in trials))
        sides = _sides(trials_file, work)
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                cache = work / f"cache-{r}-{len(times.get(name, []))}-{abs(hash(name))}"
                seconds = _run(sides[name], cache)
                times.setdefault(name, []).append(seconds)
                print(f"round {r + 1}: {name}: {seconds:.1f} s", file=sys.stderr)
    load_after = os.getloadavg()[0]

    naive = sum(times["naive (PyTorch)"])
    lines = [
        "# Encoder and cold builds by runtime", "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'unknown'}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}. Load average {load_before:.2f} at the start, "
        f"{load_after:.2f} at the end.", "",
        f"{len(trials)} random trials of `{os.path.relpath(args.corpus, ROOT)}` (seed {args.seed}); every side a "
        f"whole process (start, imports, model load, work, exit), {args.rounds} rounds in alternating order; "
        f"builds cold (empty embedding cache). Before the rounds, loading the model with onnx-int8 took "
        f"{export_s:.1f} s (with the one-off export and int8 quantisation where this machine had not cached them, "
        "~5 s); every round reads the cached export.", "",
        "| side | " + " | ".join(f"round {r + 1}" for r in range(args.rounds)) + " | total | vs naive |",
        "|---|" + "---:|" * (args.rounds + 2),
    ]
    for name, values in times.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f} s" for v in values)
                     + f" | {sum(values):.1f} s | {naive / sum(values):.2f}x |")
    write_report(args.out, "\n".join(lines), "python scripts/benchmark_encoder.py " + shlex.join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
