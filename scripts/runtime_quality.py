"""Write a labelled-pair comparison of two builds that differ in one setting: the runtime or the vectors.

    python scripts/runtime_quality.py --index indexes/demo-int8 --versus indexes/demo
    python scripts/runtime_quality.py --index indexes/demo-vint8 --versus indexes/demo --out benchmarks/vectors.md

Both indexes must be built from the same sources (``make demo`` builds one; the other is the same
``related-trials build`` with ``--runtime onnx-int8`` or ``--vectors int8``). For each, the engine is
scored exactly as in ``benchmarks/quality.md`` (design and coverage chosen and fitted by nested,
query-grouped cross-validation on that index's own signals), with the dense baseline (one embedding
of the whole text by the build's runtime) beside it. Differences are paired by query: ``--index``
minus ``--versus``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time

from _report import write_report  # scripts/_report.py (a script's folder is first on sys.path)

import numpy as np

from similarity import Ranker, TrialIndex
from similarity.evaluation import HEADLINE, evaluate, nested_cross_validation, read_pairs
from similarity.evaluation.runs import bootstrap_interval
from similarity.ranking.selection import query_signals

ENGINE = "engine (nested CV)"
BASELINES = ("dense", "tfidf")


def _score(index: TrialIndex, pairs, folds: int, cache_dir: str):
    ranker = Ranker(index)
    nested = nested_cross_validation(query_signals(ranker, pairs), n_splits=folds)
    engines = {ENGINE: nested.engine(ranker)}
    return {mode: evaluate(index, pairs, mode=mode, engines=engines, baselines=BASELINES, cache_dir=cache_dir)
            for mode in ("rerank", "retrieve")}


def _paired(a, b, method: str, metric: str):
    pa, pb = a.per_query[method][metric], b.per_query[method][metric]
    common = sorted(set(pa) & set(pb))
    diff = np.array([pa[q] - pb[q] for q in common])
    return (*bootstrap_interval(diff), int((diff > 1e-9).sum()), int((np.abs(diff) <= 1e-9).sum()),
            int((diff < -1e-9).sum()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/demo", help="the build under test (default: the demo's)")
    parser.add_argument("--versus", required=True, help="the same sources built with the other runtime or vectors")
    parser.add_argument("--pairs", default="data/trialsim-dev/pairs.tsv")
    parser.add_argument("--cache-dir", default=".cache/embeddings")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--max-loss", type=float, default=0.005, help="largest mean loss that counts as holding")
    parser.add_argument("--out", default="benchmarks/runtime.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pairs = read_pairs(args.pairs)
    index, other = TrialIndex.load(args.index), TrialIndex.load(args.versus)
    if sorted(index.columns["nct_id"].tolist()) != sorted(other.columns["nct_id"].tolist()):
        raise SystemExit("the two indexes hold different trials: build both from the same sources")
    mine = _score(index, pairs, args.folds, args.cache_dir)
    theirs = _score(other, pairs, args.folds, args.cache_dir)
    mine_layout, their_layout = index.config.layout(), other.config.layout()
    differs = [k for k in mine_layout if mine_layout[k] != their_layout.get(k)]
    if differs not in (["runtime"], ["vectors"]):
        raise SystemExit(f"the two builds must differ in the runtime or the vectors alone; they differ in {differs or 'nothing'}")
    setting = differs[0]
    a, b = mine_layout[setting], their_layout[setting]
    what = {"runtime": "what runs the text model", "vectors": "how the field vectors are stored"}[setting]

    lines = [
        f"# Labelled-pair quality by {setting}: {a} against {b}", "",
        f"Two builds of the same sources that differ only in {what}. Each row is scored as in "
        "`benchmarks/quality.md`: the engine's design and aspect-coverage weight are chosen and fitted by nested, "
        "query-grouped cross-validation on that build's own signals; the dense and TF-IDF baselines in the same run "
        "(dense embeds with the build's runtime; TF-IDF does not embed, a control). Intervals are 95% bootstrap "
        f"intervals over queries; differences are paired by query ({a} minus {b}).", "",
        f"- date: {dt.date.today().isoformat()}; machine: {platform.node() or 'unknown'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- builds: `{args.index}` ({a}) and `{args.versus}` ({b}), {len(index)} trials each, model "
        f"{index.manifest.model}, fields {', '.join(index.config.text_fields)}",
        f"- pairs: `{args.pairs}`: {mine['rerank'].queries} queries", "",
        f"| mode | metric | method | {a} | {b} | {a} minus {b} | wins / ties / losses | holds (loss <= {args.max_loss}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for mode in ("rerank", "retrieve"):
        for metric in HEADLINE[mode]:
            for method in (ENGINE, *BASELINES):
                x = mine[mode].interval(method, metric)
                y = theirs[mode].interval(method, metric)
                d, lo, hi, w, t, l = _paired(mine[mode], theirs[mode], method, metric)
                holds = d >= -args.max_loss
                if method == ENGINE and metric in ("nDCG@5", "R@10"):
                    verdicts.append((mode, metric, d, holds))
                lines.append(
                    f"| {mode} | {metric} | {method} | {x[0]:.4f} [{x[1]:.3f}, {x[2]:.3f}] | "
                    f"{y[0]:.4f} [{y[1]:.3f}, {y[2]:.3f}] | {d:+.4f} [{lo:+.4f}, {hi:+.4f}] | {w} / {t} / {l} | "
                    f"{'yes' if holds else '**no**'} |")
    lines += ["", "Verdict on the targets (engine, mean loss at most "
              f"{args.max_loss}): " + "; ".join(f"{mode} {metric} {d:+.4f} {'holds' if ok else 'does not hold'}"
                                               for mode, metric, d, ok in verdicts) + ".", "",
              f"_Report written in {time.perf_counter() - started:.0f} s._"]
    write_report(args.out, "\n".join(lines), "python scripts/runtime_quality.py " + shlex.join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
