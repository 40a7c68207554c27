"""Write benchmarks/quality.md: the engine and its ablations against the baselines, same run.

    python scripts/quality_report.py --index indexes/demo --pairs data/trialsim-dev/pairs.tsv

``--index`` must hold the labelled trials (trialsim-dev) and the corpus (``make demo`` builds it).
The field and model ablations need per-field vectors the default index does not store (criteria,
description, outcomes; mpnet), so they run on small indexes of the labelled trials only, built
under ``--work-dir`` (embeddings cached in ``--cache-dir``). Every learned blend is scored by
leave-one-query-out: no query is ranked by weights fitted on its own pairs.
Hand-written notes below the ``<!-- notes -->`` line of the output are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from similarity import BlendWeights, Ranker, TrialIndex, build_index, load_trials
from similarity.blend import RRFBlend
from similarity.diversity import Diversity
from similarity.evaluate import evaluate, read_pairs
from similarity.index import IndexConfig
from similarity.tuning import cross_validated_engine, refit_params

NOTES = "<!-- notes -->"
BASELINES = ("tfidf", "bm25", "dense")
PER_SIGNAL = "learned per signal (the rerank stage alone)"
PER_GROUP = "learned per group (the previous default)"
RETRIEVE_STAGE = "learned per group without the structured signals (the retrieve stage alone)"


def _signal_ablation(ranker, pairs, fit) -> dict:
    """Learned (cross-validated) blends with one signal group left out, or only one kept."""
    groups = {"semantic": ("field:",), "structured": ("attr:",), "lexical": ("lexical",)}
    engines = {}
    for name, prefixes in groups.items():
        others = tuple(p for g, ps in groups.items() if g != name for p in ps)
        engines[f"only {name} (learned)"] = cross_validated_engine(ranker, pairs, exclude=others, **fit)
        engines[f"without {name} (learned)"] = cross_validated_engine(ranker, pairs, exclude=prefixes, **fit)
    return engines


def _each_signal(ranker, pairs, fit) -> dict:
    """Per signal: the list ranked by that signal alone, and the learned blend without it."""
    attributes = (*ranker.signals.attributes, "phase")
    engines = {}
    for name in ranker.signals.names:
        kind, _, key = name.partition(":")
        if kind == "field":
            alone = BlendWeights(1.0, 0.0, 0.0, fields=_only(ranker.index, [key]))
        elif kind == "attr":
            alone = BlendWeights(0.0, 1.0, 0.0, attributes={a: float(a == key) for a in attributes})
        else:
            alone = BlendWeights(0.0, 0.0, 1.0)
        engines[f"only {name}"] = ranker.with_blend(alone)
        engines[f"without {name} (learned)"] = cross_validated_engine(ranker, pairs, exclude=(name,), **fit)
    return engines


def _only(index, fields) -> dict[str, float]:
    """Field weights that keep ``fields`` (equal weights) and zero the index's other fields."""
    return {f: float(f in fields) for f in index.config.text_fields}


def _without_diversity(engine):
    if isinstance(engine, Ranker):
        return engine.with_blend(diversity=None)
    return lambda query_id: engine(query_id).with_blend(diversity=None)


def _table(result, title: str) -> list[str]:
    names = list(next(iter(result.methods.values())))
    lines = [f"**{title}** — {result.queries} queries ({result.skipped} skipped without a positive)", ""]
    lines.append("| method | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for method, values in result.methods.items():
        label = f"*{method}*" if method in BASELINES else method
        lines.append(f"| {label} | " + " | ".join(f"{values[n]:.4f}" for n in names) + " |")
    return lines + [""]


def _gap(result, engine: str, metric: str) -> str:
    best = max(BASELINES, key=lambda b: result.methods[b][metric] if b in result.methods else -1)
    diff = result.methods[engine][metric] - result.methods[best][metric]
    return f"{engine} {result.methods[engine][metric]:.4f} vs best baseline {best} {result.methods[best][metric]:.4f}: {diff:+.4f}"


def _paired(result, a: str, b: str, metric: str) -> tuple[float, float, float]:
    """Mean per-query difference ``a - b`` of ``metric`` in one run, with a 95% paired bootstrap interval."""
    va, vb = result.per_query[a][metric], result.per_query[b][metric]
    diff = np.array([va[q] - vb[q] for q in sorted(va)])
    rng = np.random.default_rng(0)
    means = rng.choice(diff, size=(5000, len(diff)), replace=True).mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _examples(index, ranker, pairs, queries, k=5) -> list[str]:
    lines = []
    for q in queries:
        trial = index.trial(q)
        labels = pairs.get(q, {})
        lines.append(f"**{q}** — {trial.title} ({trial.overall_status.value if trial.overall_status else '?'}, "
                     f"{trial.phase or 'NA'}; conditions: {', '.join((trial.conditions or [])[:3]) or '-'})")
        lines.append("")
        lines.append("| # | NCT ID | title | status | phase | label | why |")
        lines.append("|---:|---|---|---|---|---|---|")
        for i, r in enumerate(ranker.related(q, k), start=1):
            label = {1: "related", 0: "not related"}.get(labels.get(r.nct_id), "unlabelled")
            title = r.title.replace("|", "/")[:90]
            lines.append(f"| {i} | {r.nct_id} | {title} | {r.status or '-'} | {r.phase or '-'} | {label} | "
                         f"{r.why['summary'].replace('|', '/')} |")
        found = sum(labels.get(r.nct_id) == 1 for r in ranker.related(q, k))
        lines.append("")
        lines.append(f"{found} of the {sum(labels.values())} labelled related trials are in this top {k}; "
                     f"{sum(labels.get(r.nct_id) == 0 for r in ranker.related(q, k))} labelled unrelated.")
        lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="indexes/demo")
    parser.add_argument("--pairs", default="data/trialsim-dev/pairs.tsv")
    parser.add_argument("--trials", default="data/trialsim-dev/trials.jsonl", help="labelled trials (ablation indexes)")
    parser.add_argument("--work-dir", default="indexes/ablation")
    parser.add_argument("--cache-dir", default=".cache/embeddings")
    parser.add_argument("--out", default="benchmarks/quality.md")
    parser.add_argument("--examples", default="NCT00894101,NCT02756858,NCT01801631")
    parser.add_argument("--skip-models", action="store_true", help="leave out the MiniLM vs mpnet rows")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    pairs = read_pairs(args.pairs)
    index = TrialIndex.load(args.index)
    shipped = Ranker(index, diversity=Diversity())  # what `related` and the API serve by default
    fit = {}
    if shipped.blend.method in ("learned", "cascade"):
        fit = refit_params(shipped.blend)
    default = cross_validated_engine(shipped, pairs, **fit) if fit else shipped
    fixed = Ranker(index, BlendWeights())
    engines = {
        "engine (default)": default,
        "engine, diversity off": _without_diversity(default),
        "fixed weights (hand-set)": fixed,
        "RRF of the groups": fixed.with_blend(RRFBlend()),
        PER_SIGNAL: cross_validated_engine(fixed, pairs, **{**fit, "structure": "signals"}),
        PER_GROUP: cross_validated_engine(fixed, pairs, **{**fit, "structure": "groups"}),
        RETRIEVE_STAGE: cross_validated_engine(fixed, pairs, **{**fit, "structure": "groups"}, exclude=("attr:",)),
        "learned per group, pairwise": cross_validated_engine(
            fixed, pairs, **{**fit, "structure": "groups", "objective": "pairwise"}),
        "learned per signal, labelled pairs only": cross_validated_engine(
            fixed, pairs, objective="pointwise", structure="signals", random_negatives=0),
        "learned per signal, pairwise": cross_validated_engine(fixed, pairs, objective="pairwise", structure="signals"),
        "learned per signal, negatives from the query's candidates": cross_validated_engine(
            fixed, pairs, objective="pointwise", structure="signals", random_negatives=0, candidate_negatives=30),
        **_signal_ablation(fixed, pairs, fit),
    }
    sections, signal_sections = {}, {}
    for mode in ("rerank", "retrieve"):
        sections[mode] = evaluate(index, pairs, mode=mode, engines=engines, baselines=BASELINES, cache_dir=args.cache_dir)
        signal_sections[mode] = evaluate(index, pairs, mode=mode, engines=_each_signal(fixed, pairs, fit), baselines=(),
                                         cache_dir=args.cache_dir)

    # fields and encoding, on an index of the labelled trials with every field embedded
    work = Path(args.work_dir)
    labelled = load_trials([args.trials])
    field_index = _ensure(work / "all-fields", labelled, IndexConfig(
        text_fields=("title", "brief_title", "conditions", "interventions", "summary", "description", "criteria",
                     "outcomes"),
        term_fields=(), max_chunks=3), args.cache_dir)
    f_ranker = Ranker(field_index, BlendWeights())
    field_engines = {}
    for f in field_index.config.text_fields:
        field_engines[f"only {f}"] = f_ranker.with_blend(BlendWeights(1.0, 0.0, 0.0, fields=_only(field_index, [f])))
    field_sets = {
        "both titles + conditions + interventions + summary (the previous default)": (
            "title", "conditions", "interventions", "summary"),
        "brief title + conditions + interventions + summary": ("brief_title", "conditions", "interventions", "summary"),
        "brief title + conditions + interventions": ("brief_title", "conditions", "interventions"),
        "all eight fields": field_index.config.text_fields,
    }
    for name, fields in field_sets.items():
        weights = _only(field_index, fields)
        field_engines[f"{name}, semantic only"] = f_ranker.with_blend(BlendWeights(1.0, 0.0, 0.0, fields=weights))
        excluded = tuple(f"field:{f}" for f in field_index.config.text_fields if f not in fields)
        field_engines[f"{name}, learned blend"] = cross_validated_engine(f_ranker, pairs, exclude=excluded, **fit)
    fields_result = {mode: evaluate(field_index, pairs, mode=mode, engines=field_engines, baselines=BASELINES,
                                    cache_dir=args.cache_dir) for mode in ("rerank", "retrieve")}

    # the default layout: conditions and interventions embedded term by term (the MiniLM model index)
    layout_index = _ensure(work / "minilm", labelled, IndexConfig(), args.cache_dir)
    l_ranker = Ranker(layout_index, BlendWeights())
    layout_engines = {
        "brief title + conditions + interventions + summary, learned blend (default)": cross_validated_engine(
            l_ranker, pairs, **fit),
        "brief title + conditions + interventions, learned blend (build --fast)": cross_validated_engine(
            l_ranker, pairs, exclude=("field:summary",), **fit),
    }
    layout_result = {mode: evaluate(layout_index, pairs, mode=mode, engines=layout_engines, baselines=("dense",),
                                    cache_dir=args.cache_dir) for mode in ("rerank", "retrieve")}

    models = {}
    if not args.skip_models:
        for name, model in (("MiniLM", "all-MiniLM-L6-v2"), ("mpnet", "all-mpnet-base-v2")):
            m_index = _ensure(work / name.lower(), labelled, IndexConfig(model=model), args.cache_dir)
            m_ranker = Ranker(m_index, BlendWeights())
            m_engines = {"fixed weights": m_ranker, "learned": cross_validated_engine(m_ranker, pairs, **fit)}
            models[name] = {mode: evaluate(m_index, pairs, mode=mode, engines=m_engines, baselines=("dense",),
                                           cache_dir=args.cache_dir) for mode in ("rerank", "retrieve")}

    intervals = [
        (f"engine minus {b}, {mode} {metric}", _paired(sections[mode], "engine (default)", b, metric))
        for b in ("bm25", "dense", PER_GROUP, PER_SIGNAL, RETRIEVE_STAGE)
        for mode, metric in (("rerank", "nDCG@5"), ("retrieve", "R@10"))
    ]
    example_ranker = shipped
    lines = _report(args, index, shipped, pairs, sections, fields_result, field_index, models, intervals, fit,
                    layout_result, signal_sections)
    lines += ["## Example related lists (default engine, whole index)", ""]
    lines += _examples(index, example_ranker, pairs, [q for q in args.examples.split(",") if q])
    lines.append(f"_Report written in {time.perf_counter() - started:.0f} s._")
    out = Path(args.out)
    notes = ""
    if out.exists() and NOTES in out.read_text():
        notes = out.read_text().split(NOTES, 1)[1]
    out.write_text("\n".join(lines) + "\n\n" + NOTES + (notes or "\n"))
    print(f"wrote {out}")
    return 0


def _ensure(path: Path, trials, config: IndexConfig, cache_dir: str) -> TrialIndex:
    try:
        return TrialIndex.load(path, expect=config)
    except Exception:  # missing or another layout: (re)build it
        build_index(trials, config, cache_dir=cache_dir, progress=True).save(path)
        return TrialIndex.load(path, expect=config)


def _report(args, index, shipped, pairs, sections, fields_result, field_index, models, intervals, fit, layout_result,
            signal_sections) -> list[str]:
    m = index.manifest
    lines = [
        "# Ranking quality on trialsim-dev",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {platform.node() or 'unknown'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- index: `{args.index}` — {m['count']} trials (the labelled trials plus the 7,003-trial corpus), model "
        f"{m['model']}, fields {', '.join(m['text_fields'])}, built {m['built_at']}",
        f"- pairs: `{args.pairs}`; shipped blend: {shipped.blend.method}"
        + (f" ({_describe(shipped.blend, fit)}, {fit['random_negatives']} random negatives per query)" if fit else ""),
        "- every *learned* row is cross-validated by query (leave-one-query-out, C chosen inside each fold);"
        " baselines (*tfidf*, *bm25*, *dense*: one embedding of the concatenated text) are computed in the same run"
        " on the same index's trials",
        "",
        "## Headline",
        "",
        f"- rerank nDCG@5: {_gap(sections['rerank'], 'engine (default)', 'nDCG@5')}",
        f"- retrieve R@10: {_gap(sections['retrieve'], 'engine (default)', 'R@10')}",
    ]
    lines += ["", f"Per-query paired bootstrap over the {sections['rerank'].queries} queries (mean difference, 95% interval):", ""]
    for name, (mean, low, high) in intervals:
        lines.append(f"- {name}: {mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    lines += ["", "## Rerank (each query's labelled candidates; Trial2Vec protocol)", "",
              "Rerank scores the labelled candidates directly, so diversity (which reorders a related list) "
              "changes nothing here; it shows in retrieve.", ""]
    lines += _table(sections["rerank"], "rerank, whole index")
    lines += ["## Retrieve (the whole index ranked; labelled positives relevant)", ""]
    lines += _table(sections["retrieve"], "retrieve, whole index")
    lines += ["Retrieve R@10 by query (one query of 17 weighs 0.059 in the mean):", ""]
    lines += _per_query_table(index, shipped, pairs, sections["retrieve"], [
        "engine (default)", RETRIEVE_STAGE, PER_GROUP, PER_SIGNAL, "fixed weights (hand-set)", "bm25", "dense"])
    lines += ["## Each signal (whole index)", "",
              "*only*: the list ranked by that one signal (no fitting; coarse signals tie often, and ties keep the "
              "candidates' order); *without*: the default learned blend refitted without it, cross-validated. "
              f"For reference, the default engine scores {_pick(sections, 'engine (default)')}.", "",
              "| signal | only: rerank nDCG@5 | only: retrieve R@10 | without (learned): rerank nDCG@5 | "
              "without (learned): retrieve R@10 |", "|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(m.split(" ", 1)[1].removesuffix(" (learned)") for m in signal_sections["rerank"].methods):
        only, without = f"only {name}", f"without {name} (learned)"
        lines.append(f"| {name} | " + " | ".join(
            f"{signal_sections[mode].methods[m][metric]:.4f}" for m in (only, without)
            for mode, metric in (("rerank", "nDCG@5"), ("retrieve", "R@10"))) + " |")
    lines.append("")
    lines += ["## Fields and encoding", "",
              f"Index of the {len(field_index)} labelled trials only, every field embedded as one text (long fields in up to "
              f"{field_index.config.max_chunks} chunks of {field_index.config.chunk_words} words); *dense* is the "
              "one-concatenated-text variant. Retrieve here ranks these trials only, a small pool of the labelled "
              "topics: an easier task than the whole index.", ""]
    lines += _table(fields_result["rerank"], "rerank, labelled trials, per field")
    lines += _table(fields_result["retrieve"], "retrieve, labelled trials, per field")
    lines += ["Conditions and interventions embedded term by term (each distinct condition, keyword, MeSH term or "
              "intervention once, a trial's field vector the mean of its terms'), as the default index does:", ""]
    lines += _table(layout_result["rerank"], "rerank, labelled trials, default layout")
    lines += _table(layout_result["retrieve"], "retrieve, labelled trials, default layout")
    if models:
        lines += ["## Model: MiniLM vs mpnet (labelled trials, default fields)", ""]
        lines += ["| model | fixed weights nDCG@5 | learned nDCG@5 | dense nDCG@5 | MAP (learned) | "
                  "fixed weights R@10 | learned R@10 | dense R@10 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, res in models.items():
            mm, rm = res["rerank"].methods, res["retrieve"].methods
            lines.append(f"| {name} | {mm['fixed weights']['nDCG@5']:.4f} | {mm['learned']['nDCG@5']:.4f} | "
                         f"{mm['dense']['nDCG@5']:.4f} | {mm['learned']['MAP']:.4f} | "
                         f"{rm['fixed weights']['R@10']:.4f} | {rm['learned']['R@10']:.4f} | {rm['dense']['R@10']:.4f} |")
        lines.append("")
    return lines


def _per_query_table(index, shipped, pairs, result, methods) -> list[str]:
    """Retrieve R@10 of each query for ``methods``, with its positives and how many the search fetches."""
    lines = ["| query | positives | in the 300 candidates | " + " | ".join(methods) + " |",
             "|---|---:|---:|" + "---:|" * len(methods)]
    for q in sorted(result.per_query[methods[0]]["R@10"]):
        positives = {c for c, label in pairs[q].items() if label and c in index}
        fetched = {index.nct_id(r) for r in shipped.candidates(shipped.features(q), shipped.n_candidates)}
        lines.append(f"| {q} | {len(positives)} | {len(positives & fetched)} | "
                     + " | ".join(f"{result.per_query[m]['R@10'][q]:.2f}" for m in methods) + " |")
    return lines + [""]


def _describe(blend, fit) -> str:
    """The shipped learned blend in words."""
    C = blend.fitted_on.get("C")
    if blend.method == "cascade":
        return (f"a cascade of {fit['objective']} logistic regressions: one weight per signal group over the semantic "
                f"and lexical signals retrieves (C={C['retrieve']}), one weight per signal reranks the first "
                f"{blend.depth} (C={C['rerank']})")
    per = "signal group" if fit["structure"] == "groups" else "signal"
    return f"{fit['objective']} logistic regression, one weight per {per}, C={C}"


def _pick(sections, method: str) -> str:
    return (f"rerank nDCG@5 {sections['rerank'].methods[method]['nDCG@5']:.4f}, "
            f"retrieve R@10 {sections['retrieve'].methods[method]['R@10']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
