"""Write benchmarks/quality.md: the default ranker, its ablations and the baselines, one run, nested CV.

    python scripts/quality_report.py --index indexes/demo --pairs data/trialsim-dev/pairs.tsv

``--index`` must hold the labelled trials (trialsim-dev) and the corpus (``make demo`` builds it).
The *engine* row is the whole procedure that produced the shipped blend (choose a design among
:data:`similarity.ranking.selection.DESIGNS` by inner cross-validation, fit it), re-run inside each outer
query-grouped fold, so no query is ranked by anything chosen or fitted with its labels. Each
design alone, and the fusion with one signal left out (nothing fitted: no labels involved), are
scored in the same run against the same baselines. Hand-written notes below the
``<!-- notes -->`` line of the output are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from collections import Counter
import shlex
import subprocess
import sys
import time
from pathlib import Path

from similarity import Ranker, TrialIndex
from similarity.defaults import FUSION_SIGNALS
from similarity.evaluation import BASELINES, HEADLINE, evaluate, nested_cross_validation, read_pairs
from similarity.evaluation.search import SEARCH_DESIGNS, evaluate_search
from similarity.ranking import FusionBlend, blend_from_dict
from similarity.ranking.selection import COVERAGE_WEIGHTS, DESIGNS, query_signals, select_design

NOTES = "<!-- notes -->"
ENGINE = "engine (nested: design chosen and fitted in each fold)"
NO_COVERAGE = "engine without aspect coverage (nested, coverage weight 0)"
PREVIOUS = "previous default (cascade fitted on 17 of these queries; in-sample for them)"


def _fusion_without(signal: str) -> FusionBlend:
    weights = dict(FUSION_SIGNALS)
    if signal.startswith("field:"):
        weights[signal] = 0.0
    else:
        weights.pop(signal)
    return FusionBlend(weights)


def _previous_default(ranker):
    """The cascade shipped before this report, read from git (None where git cannot give it)."""
    try:
        text = subprocess.run(["git", "show", "8395a29:similarity/default_blend.json"], capture_output=True,
                              text=True, check=True).stdout
        return ranker.with_blend(blend_from_dict(json.loads(text)))
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="indexes/demo")
    parser.add_argument("--pairs", default="data/trialsim-dev/pairs.tsv")
    parser.add_argument("--cache-dir", default=".cache/embeddings")
    parser.add_argument("--folds", type=int, default=10, help="outer folds (default 10)")
    parser.add_argument("--out", default="benchmarks/quality.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    pairs = read_pairs(args.pairs)
    index = TrialIndex.load(args.index)
    ranker = Ranker(index)
    queries = query_signals(ranker, pairs)
    nested = nested_cross_validation(queries, n_splits=args.folds)
    shipped = select_design(queries)  # what fit-weights --structure select ships
    engines = {ENGINE: nested.engine(ranker)}
    engines[NO_COVERAGE] = nested_cross_validation(queries, n_splits=args.folds, coverage=(0.0,)).engine(ranker)
    for weight in COVERAGE_WEIGHTS[1:]:  # what coverage costs the labelled figures where it is forced on
        engines[f"engine with aspect coverage fixed at {weight:g} (nested)"] = nested_cross_validation(
            queries, n_splits=args.folds, coverage=(weight,)).engine(ranker)
    for name in DESIGNS:
        engines[f"design: {name}"] = nested_cross_validation(queries, (name,), n_splits=args.folds).engine(ranker)
    for signal in ranker.signals.names:
        if FusionBlend().weight_of(signal) > 0:
            engines[f"fusion without {signal}"] = ranker.with_blend(_fusion_without(signal))
    engines["fusion, diversity off"] = ranker.with_blend(FusionBlend(), diversity=None)
    previous = _previous_default(ranker)
    if previous is not None:
        engines[PREVIOUS] = previous
    results = {mode: evaluate(index, pairs, mode=mode, engines=engines, baselines=BASELINES, cache_dir=args.cache_dir)
               for mode in ("rerank", "retrieve")}

    lines = _header(args, index, results["rerank"], nested, shipped)
    for mode, result in results.items():
        lines += _headline(result, mode)
    for mode, result in results.items():
        lines += _table(result, mode)
    lines += _ablation(results)
    lines += _search(index, pairs, ranker, args)
    lines += _by_query(results, index, pairs)
    lines.append(f"_Report written in {time.perf_counter() - started:.0f} s._")
    out = Path(args.out)
    notes = ""
    if out.exists() and NOTES in out.read_text():
        notes = out.read_text().split(NOTES, 1)[1]
    out.write_text("\n".join(lines) + "\n\n" + NOTES + (notes or "\n"))
    print(f"wrote {out}")
    return 0


def _header(args, index, result, nested, shipped) -> list[str]:
    chosen = ", ".join(f"{d} in {n}" for d, n in nested.chosen().most_common())
    weights = Counter(selection.coverage for _, selection in nested.folds)
    coverage = ", ".join(f"{w:g} in {n}" for w, n in weights.most_common())
    scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(shipped.scores.items(), key=lambda x: -x[1]))
    return [
        "# Ranking quality on trialsim-dev",
        "",
        "**Protocol.** Every figure of the engine comes from nested, query-grouped cross-validation: "
        f"the {result.queries} labelled queries are split into {len(nested.folds)} outer folds, and for each fold "
        "the design of the ranker (fusion or learned blend, its structure, its weights and C) is chosen and fitted "
        "by an inner 4-fold cross-validation on the other folds' queries alone, then its aspect-coverage weight "
        "(xQuAD over the condition and intervention lists, `similarity/ranking/coverage.py`) is chosen on those "
        "same queries, and both are scored on the fold's queries. "
        "Baselines are computed in the same run on the same index; intervals are 95% bootstrap intervals over "
        "queries, and differences are paired by query.",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {platform.node() or 'unknown'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- index: `{args.index}` — {len(index)} trials (the labelled trials plus the 7,003-trial corpus), model "
        f"{index.manifest.model}, fields {', '.join(index.config.text_fields)}",
        f"- pairs: `{args.pairs}`: {result.queries} queries with a positive ({result.skipped} without one skipped)",
        f"- designs the selection chooses among: {', '.join(f'{d.name} ({d.parameters} fitted)' for d in DESIGNS.values())}",
        f"- chosen in the outer folds: {chosen}",
        f"- aspect-coverage weight chosen in the outer folds (among {', '.join(f'{w:g}' for w in COVERAGE_WEIGHTS)}; "
        f"the smallest within one standard error of the best): {coverage}",
        f"- shipped (`similarity/ranking/default_blend.json`, the same selection on all {result.queries} queries): "
        f"**{shipped.design}** with aspect-coverage weight **{shipped.coverage:g}**; inner cross-validated criterion (mean of rerank nDCG@5 and retrieve R@10): {scores}; "
        f"one standard error {shipped.standard_error:.4f}",
        "",
    ]


def _headline(result, mode) -> list[str]:
    baselines = [b for b in BASELINES if b in result.methods]
    comparison = result.comparison(ENGINE, baselines)
    lines = [f"## Headline, {mode}", "",
             "| metric | engine (nested CV) | " + " | ".join(baselines) + " | engine minus best baseline | wins / ties / losses |",
             "|---|---|" + "---|" * len(baselines) + "---|---|"]
    for metric in HEADLINE[mode]:
        cells = []
        for m in (ENGINE, *baselines):
            mean, lo, hi = comparison["intervals"][metric][m]
            cells.append(f"{mean:.4f} [{lo:.3f}, {hi:.3f}]")
        best = comparison["versus_best"][metric]
        d, dlo, dhi = comparison["paired"][metric][best["baseline"]]
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {best['baseline']}: {d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]"
                     f" | {best['wins']} / {best['ties']} / {best['losses']} |")
    lines += ["", "Paired differences, engine minus each baseline (mean [95% interval]):", ""]
    for metric in HEADLINE[mode]:
        parts = [f"{b} {d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for b, (d, lo, hi) in comparison["paired"][metric].items()]
        lines.append(f"- {metric}: " + "; ".join(parts))
    return lines + [""]


def _search(index, pairs, ranker, args) -> list[str]:
    """Free-text search: each query trial's title, and its conditions + interventions as a sentence."""
    lines = ["## Free-text search", "",
             "Each labelled query trial's brief title (*title*), and separately its conditions and interventions as "
             "one sentence (*terms*: \"metformin, placebo for type 2 diabetes\"), is searched as free text "
             "(`related-trials search`) with that trial left out of the list; its labelled positives are the "
             "relevant set. The ways to read a text (" + ", ".join(SEARCH_DESIGNS) + ") are chosen by "
             f"{args.folds}-fold query-grouped cross-validation on R@10: the *engine* row scores each query with the "
             "reading chosen on the other folds' queries. Baselines score the same text in the same run. Command: "
             f"`related-trials evaluate --index {args.index} --pairs {args.pairs} --search title|terms`.", ""]
    for kind in ("title", "terms"):
        found = evaluate_search(index, pairs, kind=kind, ranker=ranker, cache_dir=args.cache_dir, n_splits=args.folds)
        result = found.result
        baselines = [b for b in BASELINES if b in result.methods]
        comparison = result.comparison("engine", baselines)
        chosen = ", ".join(f"{d} in {n}" for d, n in found.chosen.most_common())
        lines += [f"### Query = {kind} ({result.queries} queries; reading chosen in the folds: {chosen}; "
                  f"shipped: {found.shipped})", "",
                  "| method | R@10 | nDCG@10 | MRR | R@50 | R@10 minus engine |", "|---|---|---|---|---:|---|"]
        for method, values in result.methods.items():
            cells = [f"{values[m]:.4f} [{lo:.3f}, {hi:.3f}]" for m in ("R@10", "nDCG@10", "MRR")
                     for _, lo, hi in [result.interval(method, m)]]
            diff = "" if method == "engine" else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*result.paired(method, "engine", "R@10"))
            name = f"*{method}*" if method in BASELINES else method
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {values['R@50']:.4f} | {diff} |")
        best = comparison["versus_best"]["R@10"]
        d, lo, hi = comparison["paired"]["R@10"][best["baseline"]]
        lines += ["", f"Engine minus the best baseline on R@10 ({best['baseline']}): {d:+.4f} [{lo:+.4f}, {hi:+.4f}]; "
                      f"{best['wins']} wins, {best['ties']} ties, {best['losses']} losses.", ""]
    return lines


def _table(result, mode) -> list[str]:
    metrics = list(next(iter(result.methods.values())))
    lines = [f"## All rows, {mode}", "",
             "| method | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for method, values in result.methods.items():
        name = f"*{method}*" if method in BASELINES else method
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |")
    return lines + [""]


def _ablation(results) -> list[str]:
    """Each row against the engine, paired, on the two target metrics."""
    lines = ["## Ablations, paired against the engine", "",
             "Each row minus the engine row, per query (mean [95% interval]); design rows are nested like the "
             "engine, fusion rows fit nothing.", "",
             "| row | rerank nDCG@5 | retrieve R@10 |", "|---|---|---|"]
    for method in results["rerank"].methods:
        if method == ENGINE or method in BASELINES:
            continue
        cells = []
        for mode, metric in (("rerank", "nDCG@5"), ("retrieve", "R@10")):
            d, lo, hi = results[mode].paired(method, ENGINE, metric)
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def _by_query(results, index, pairs) -> list[str]:
    rerank, retrieve = results["rerank"], results["retrieve"]
    lines = ["## By query", "", "| query | title | positives | rerank nDCG@5 engine / dense / tfidf | "
             "retrieve R@10 engine / tfidf / rrf |", "|---|---|---:|---|---|"]
    per_r, per_t = rerank.per_query, retrieve.per_query
    for q in sorted(per_r[ENGINE]["nDCG@5"]):
        title = (index.trial(q).brief_title or "")[:60].replace("|", "/")
        positives = sum(pairs[q].values())
        r = " / ".join(f"{per_r[m]['nDCG@5'][q]:.2f}" for m in (ENGINE, "dense", "tfidf"))
        t = " / ".join(f"{per_t[m]['R@10'].get(q, 0.0):.2f}" for m in (ENGINE, "tfidf", "rrf"))
        lines.append(f"| {q} | {title} | {positives} | {r} | {t} |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
