"""The ``related-trials`` command line: build, update, related, search, evaluate, fit-weights, serve.

Errors print one line (``related-trials: error: ...``) and exit non-zero, never a traceback:
1 for a failed command (unknown NCT ID, unreadable file, mismatched index), 2 for a wrong
option, 3 when ``build`` finished but skipped bad records.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

EXIT_ERROR, EXIT_USAGE, EXIT_SKIPPED = 1, 2, 3
DEFAULT_DIVERSITY = "space"


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", action="append", metavar="S", help="keep trials with this status (repeatable)")
    parser.add_argument("--phase", action="append", metavar="P", help="keep trials in this phase (repeatable)")
    parser.add_argument("--intervention-type", action="append", metavar="T", help="keep trials with this intervention type")
    parser.add_argument("--study-type", action="append", metavar="T", help="keep trials of this study type")
    parser.add_argument("--country", action="append", metavar="NAME",
                        help="keep trials located in this country, as the registry spells it (repeatable)")
    parser.add_argument("--recruiting-only", action="store_true",
                        help="keep recruiting, not yet recruiting and enrolling-by-invitation trials")
    parser.add_argument("--age", metavar="YEARS", help="keep trials whose eligible ages hold this age")
    parser.add_argument("--sex", choices=["female", "male"], help="keep trials that admit this sex")
    parser.add_argument("--start-after", metavar="DATE", help="keep trials that started on or after DATE (YYYY[-MM[-DD]])")
    parser.add_argument("--start-before", metavar="DATE", help="keep trials that started on or before DATE")


def _add_loading(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that read records and embed them (build, update)."""
    parser.add_argument("--cache-dir", default=None, help="embedding cache directory (default DIR/cache; none for a postgresql:// index)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record, leaving the index untouched")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_diversity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--diversity", choices=["off", "space", "collapse"], default=DEFAULT_DIVERSITY,
                        help=f"near-duplicate trials: spaced out, collapsed, or left as ranked (default {DEFAULT_DIVERSITY})")


def _add_listing(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """The options of the commands that print a list (related, search)."""
    parser.add_argument("--index", required=True, metavar="DIR")
    parser.add_argument("-k", type=int, default=10, help="number of trials listed (default 10)")
    _add_filters(parser)
    parser.add_argument("--json", action="store_true", help=json_help)
    _add_diversity(parser)


def _diversity(args):
    from .ranking import Diversity

    return None if args.diversity == "off" else Diversity(mode=args.diversity)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="related-trials", description="Which other clinical trials are most related to this one?"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    build = sub.add_parser("build", help="build an index from registry records (XML, zip, API v2 JSON, CSV, JSONL)")
    build.add_argument("sources", nargs="+", metavar="SOURCE", help="files, directories or zips, any mix of formats")
    build.add_argument("--index", required=True, metavar="DIR",
                       help="index directory (created; swapped atomically), or a postgresql:// URL (a new schema, "
                            "switched to in one transaction)")
    build.add_argument("--model", default=None, help="sentence-transformers model name or path (default all-MiniLM-L6-v2)")
    build.add_argument("--runtime", choices=["torch", "onnx", "onnx-int8"], default=None,
                       help="what runs the text model (default torch; onnx-int8: ONNX Runtime with int8 weights, "
                            "~2.4x faster on CPU, slightly lower labelled-pair quality; onnx: float, ~1.2x; exported "
                            "from the installed model once and cached)")
    build.add_argument("--vectors", choices=["float16", "int8"], default=None,
                       help="how the index stores its field vectors (default int8: scalar quantised, half the "
                            "memory of float16, the same labelled-pair quality within its interval)")
    build.add_argument("--fields", default=None, help="comma-separated text fields to embed (default brief_title,conditions,interventions,summary,text)")
    build.add_argument("--fast", action="store_true",
                       help="embed brief_title,conditions,interventions only: a cold build ~3x faster, lower quality")
    build.add_argument("--term-fields", default=None, metavar="FIELDS",
                       help="list fields embedded term by term (default conditions,interventions; '' for none)")
    build.add_argument("--neighbours", type=int, default=None, metavar="K",
                       help="neighbour list length precomputed per trial (default 300 above 20,000 trials; 0 none)")
    build.add_argument("--max-chunks", type=int, default=None, help="chunks embedded per long field (default 1)")
    build.add_argument("--lists", type=int, default=None, metavar="K",
                       help="store each trial's unfiltered related list of K trials with the index, so requests for "
                            "up to K are read, not ranked (default 10; 0: none; ~9 ms a trial at build)")
    build.add_argument("--backend", choices=["auto", "numpy", "flat", "hnsw", "ivf", "ivf-sq8"], default="auto",
                       help="vector backend (default auto: exact up to 200,000 trials, IVF-SQ8 above)")
    build.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="where records are read and embedded: this process (default) or a Ray cluster "
                            "(Ray Data stages; needs pip install -e '.[scale]'); the index is the same")
    build.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="with --engine ray: join this cluster (auto, HOST:PORT or ray://HOST:PORT; "
                            "default: start a local one for the build)")
    build.add_argument("--ray-workers", type=int, default=None, metavar="N",
                       help="with --engine ray: embedding actors, one CPU and one model each (default: the cluster's CPUs)")
    _add_loading(build)

    update = sub.add_parser("update", help="add new and changed trials to an index, remove others (no full rebuild)")
    update.add_argument("sources", nargs="*", metavar="SOURCE", help="new or changed records (any format build reads)")
    update.add_argument("--index", required=True, metavar="DIR", help="index directory (the update is swapped in atomically)")
    update.add_argument("--remove", nargs="+", default=[], metavar="NCT_ID", help="NCT IDs to remove")
    _add_loading(update)

    related = sub.add_parser("related", help="print the trials most related to one trial")
    related.add_argument("nct_id", nargs="?", metavar="NCT_ID", help="an NCT ID in the index")
    related.add_argument("--document", metavar="FILE", help="a trial document (API v2 study JSON or flat record) instead of an NCT ID")
    related.add_argument("--aspect", choices=["overall", "condition", "intervention", "design"], default="overall",
                         help="related by everything (default), or by condition, intervention or design only")
    _add_listing(related, json_help="print a JSON array")

    search = sub.add_parser("search", help="print the trials most related to a free-text query")
    search.add_argument("text", metavar="TEXT", help="a sentence or a draft protocol's synopsis, in quotes")
    _add_listing(search, json_help="print the query as read and the list as JSON")

    evaluate = sub.add_parser("evaluate", help="evaluate on labelled pairs against tfidf, bm25, dense and rrf baselines")
    evaluate.add_argument("--index", required=True, metavar="DIR")
    evaluate.add_argument("--pairs", required=True, metavar="PAIRS.tsv", help="TSV: query_id, candidate_id, label")
    evaluate.add_argument("--mode", choices=["rerank", "retrieve"], default="rerank")
    evaluate.add_argument("--search", choices=["title", "terms"], default=None, metavar="KIND",
                          help="evaluate free-text search instead: each query trial's brief title (title) or its "
                               "conditions and interventions as a sentence (terms) is searched with the trial left "
                               "out; the same baselines score the text; the reading of the text chosen by cross-validation")
    evaluate.add_argument("--baselines", default="tfidf,bm25,dense,rrf", help="comma-separated baselines (default all)")
    evaluate.add_argument("--cache-dir", default=None, help="embedding cache directory (default DIR/cache; none for a postgresql:// index)")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--cv", action="store_true",
                          help="nested cross-validation by query: in each outer fold the ranker's design and weights "
                               "are chosen and fitted on the other folds' queries only, as fit-weights does on all")
    evaluate.add_argument("--folds", type=int, default=10, metavar="N", help="outer folds of --cv (default 10)")
    evaluate.add_argument("--designs", default=None, metavar="D,...",
                          help="designs --cv may choose among (default all; see fit-weights --structure select)")
    _add_diversity(evaluate)

    fit = sub.add_parser("fit-weights", help="learn the blend from labelled pairs and save it with the index")
    fit.add_argument("--index", required=True, metavar="DIR")
    fit.add_argument("--pairs", required=True, metavar="PAIRS.tsv", help="TSV: query_id, candidate_id, label")
    fit.add_argument("--objective", choices=["pointwise", "pairwise"], default="pointwise")
    fit.add_argument("--structure", choices=["select", "fusion", "cascade", "groups", "signals"], default="select",
                     help="select (default): choose among the designs by cross-validation by query and fit the "
                          "winner on all queries (what evaluate --cv measures); fusion: the z-score fusion, "
                          "nothing fitted; cascade: a per-group blend retrieves, a per-signal blend reranks the "
                          "first 10; groups: one weight per signal group; signals: one weight per signal")
    fit.add_argument("--C", default="auto", help="L2 strength of the logistic regression, or 'auto' (default)")
    fit.add_argument("--random-negatives", type=int, default=30, metavar="N",
                     help="random index trials added per query as unrelated (default 30; 0: labelled pairs only)")
    fit.add_argument("--coverage", default=None, metavar="W[,W...]",
                     help="aspect-coverage weights (0-1) to choose among with --structure select|fusion "
                          "(default 0,0.25,0.5: the smallest within one standard error of the best); one "
                          "weight fixes it, e.g. --coverage 0.25 for an overall list whose head covers the "
                          "condition and intervention aspects")
    fit.add_argument("--dry-run", action="store_true", help="print the weights and figures, do not save")
    fit.add_argument("--export", metavar="FILE", help="also write the blend as JSON (similarity/ranking/default_blend.json ships it)")

    serve = sub.add_parser("serve", help="serve the HTTP JSON API and the embeddable widget")
    serve.add_argument("--index", required=True, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="allow this origin to call the API from a browser (repeatable; '*' for any)")
    serve.add_argument("--reload-token", default=None, metavar="TOKEN",
                       help="turn on POST /admin/reload with this bearer token, 16+ characters (default "
                            "$RELATED_TRIALS_RELOAD_TOKEN; prefer it: a command line shows in ps)")
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes, all mapping the same index (default: one per core)")
    serve.add_argument("--batch-rows", type=int, default=1, metavar="N",
                       help="embed the documents of concurrent POST /related and search requests in one encoder "
                            "call, up to N (default 1: each alone, measured faster on 2 CPU cores)")
    serve.add_argument("--watch", type=float, default=2.0, metavar="SECONDS",
                       help="check DIR/CURRENT this often and swap in a new build (default 2; 0: off)")
    return parser


def _cache_dir(args) -> str | None:
    """The embedding cache: --cache-dir, else DIR/cache for a directory index (none for a URL)."""
    from .index.postgres import is_index_url

    if getattr(args, "no_cache", False):
        return None
    if args.cache_dir or is_index_url(args.index):
        return args.cache_dir
    return str(Path(args.index) / "cache")


def _k(value: int) -> int:
    from .exceptions import InvalidParameter

    if value < 1 or value > 1000:
        raise InvalidParameter(f"-k must be between 1 and 1000, got {value}")
    return value


def _store_lists(index, k: int | None, *, progress: bool) -> None:
    """Rank and store each trial's default list with ``index`` (k trials; 0: none)."""
    from . import defaults
    from .exceptions import InvalidParameter
    from .ranking import Ranker
    from .ranking.precompute import store_related_lists

    k = defaults.STORED_LIST_K if k is None else k
    if k < 0 or k > 100:
        raise InvalidParameter(f"--lists must be between 0 and 100, got {k}")
    index.related_lists = store_related_lists(Ranker(index), k, progress=progress) if k else None


def _nothing_to_build(report) -> str:
    """Why a build found no trial: how many records were skipped and the first reasons."""
    if not report.errors:
        return "the sources hold no trial records; the index was left as it was"
    shown = "; ".join(str(e) for e in report.errors[:3])
    more = f"; ... and {len(report.errors) - 3} more" if len(report.errors) > 3 else ""
    return (
        f"no trial to index: all {len(report.errors)} records were skipped as bad "
        f"({shown}{more}); the index was left as it was"
    )


def _ray_engine(args):
    """The Ray engine of ``build --engine ray`` (not started yet), or None for a local build."""
    from .exceptions import InvalidParameter

    if args.engine != "ray":
        given = [o for o, v in (("--ray-address", args.ray_address), ("--ray-workers", args.ray_workers)) if v is not None]
        if given:
            raise InvalidParameter(f"{' and '.join(given)} need --engine ray (the build engine is {args.engine!r})")
        return None
    from .index.ray_build import RayEngine

    return RayEngine(address=args.ray_address, workers=args.ray_workers, progress=not args.quiet)


def _cmd_build(args) -> int:
    import contextlib

    started = time.perf_counter()
    engine = _ray_engine(args)
    with engine or contextlib.nullcontext():
        index, report, config = _load_and_embed(args, engine)
    _store_lists(index, args.lists, progress=not args.quiet)
    build_dir = index.save(args.index)
    elapsed = time.perf_counter() - started
    print(f"{report.summary()}")
    for error in report.errors[:20]:
        print(f"  skipped: {error}", file=sys.stderr)
    if len(report.errors) > 20:
        print(f"  ... and {len(report.errors) - 20} more skipped records", file=sys.stderr)
    print(
        f"indexed {len(index)} trials into {build_dir} in {elapsed:.1f} s "
        f"({len(index) / elapsed:.1f} trials/s; backend {'pgvector' if index.path is None else index.backend.name}, "
        f"model {config.model}{'' if engine is None else f'; Ray, {engine.workers} workers'})"
    )
    return EXIT_SKIPPED if report.errors else 0


def _load_and_embed(args, engine):
    """Load the sources and build the index in this process, or on the Ray ``engine``."""
    from .exceptions import InvalidParameter
    from .features import FAST_TEXT_FIELDS
    from .index import IndexConfig, build_index
    from .ingest import LoadReport, load_trials

    report = LoadReport()
    if engine is None:
        trials = load_trials(args.sources, strict=args.strict, report=report, progress=not args.quiet)
    else:
        trials = engine.load_trials(args.sources, strict=args.strict, report=report)
    config_kwargs = {}
    if args.model:
        config_kwargs["model"] = args.model
    if args.fields and args.fast:
        raise InvalidParameter("give --fields or --fast, not both")
    if args.fields:
        config_kwargs["text_fields"] = tuple(f.strip() for f in args.fields.split(",") if f.strip())
    if args.fast:
        config_kwargs["text_fields"] = tuple(f.value for f in FAST_TEXT_FIELDS)
    if args.term_fields is not None:
        config_kwargs["term_fields"] = tuple(f.strip() for f in args.term_fields.split(",") if f.strip())
    if args.neighbours is not None:
        config_kwargs["neighbours"] = args.neighbours
    if args.max_chunks:
        config_kwargs["max_chunks"] = args.max_chunks
    if getattr(args, "runtime", None):
        config_kwargs["runtime"] = args.runtime
    if getattr(args, "vectors", None):
        config_kwargs["vectors"] = args.vectors
    config = IndexConfig(backend=args.backend, **config_kwargs)
    if not trials:
        raise InvalidParameter(_nothing_to_build(report))
    cache_dir = _cache_dir(args)
    if engine is None:
        index = build_index(trials, config, cache_dir=cache_dir, progress=not args.quiet)
    else:
        index = engine.build_index(trials, config, cache_dir=cache_dir, progress=not args.quiet)
    return index, report, config


def _cmd_update(args) -> int:
    from .exceptions import InvalidParameter
    from .index import TrialIndex
    from .ingest import LoadReport, load_trials
    from .index import update_index

    if not args.sources and not args.remove:
        raise InvalidParameter("give SOURCE files with new or changed trials, or --remove NCT_ID")
    started = time.perf_counter()
    index = TrialIndex.load(args.index)
    report = LoadReport()
    trials = load_trials(args.sources, strict=args.strict, report=report, progress=not args.quiet) if args.sources else []
    cache_dir = _cache_dir(args)
    updated, changes = update_index(index, trials, remove=args.remove, cache_dir=cache_dir, progress=not args.quiet)
    if index.related_lists is not None:  # every list is re-ranked: BM25's statistics moved for all
        _store_lists(updated, index.related_lists.k, progress=not args.quiet)
    build_dir = updated.save(args.index)
    if args.sources:
        print(report.summary())
    for error in report.errors[:20]:
        print(f"  skipped: {error}", file=sys.stderr)
    if changes.not_found:
        print(f"  not in the index, not removed: {', '.join(changes.not_found[:20])}", file=sys.stderr)
    print(
        f"updated {args.index}: {changes.summary()}; {len(updated)} trials in {build_dir} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return EXIT_SKIPPED if report.errors else 0


def _filters(args):
    from .ranking import Filters

    return Filters.parse(
        status=args.status, phase=args.phase, intervention_type=args.intervention_type, study_type=args.study_type,
        country=args.country, recruiting_only=args.recruiting_only, age=args.age, sex=args.sex,
        start_after=args.start_after, start_before=args.start_before,
    )


def _format_list(query, related) -> str:
    lines = [f"More Related Trials for {query.nct_id}: {query.title}", ""]
    if related and related[0].why.get("aspect"):
        lines[0] = f"Related by {related[0].why['aspect']} to {query.nct_id}: {query.title}"
    if not related:
        lines.append("(no related trial matches)")
    for r in related:
        lines.append(r.title)
        lines.append(f"{r.nct_id} {r.status or 'UNKNOWN'} {r.phase or 'NA'}")
        lines.append(f"    score {r.score:.3f} - {r.why['summary']}")
    return "\n".join(lines)


def _cmd_related(args) -> int:
    from .exceptions import InvalidParameter, SourceError
    from .index import TrialIndex
    from .ingest import trial_from_document
    from .ranking import Ranker

    if bool(args.nct_id) == bool(args.document):
        raise InvalidParameter("give either an NCT_ID or --document FILE")
    k, filters = _k(args.k), _filters(args)
    ranker = Ranker(TrialIndex.load(args.index), diversity=_diversity(args))
    if args.document:
        try:
            doc = json.loads(Path(args.document).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SourceError(f"cannot read {args.document}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InvalidParameter(f"{args.document} is not valid JSON: {exc}") from None
        query = trial_from_document(doc, source=args.document)
        related = ranker.related_to_trial(query, k, filters=filters, aspect=args.aspect)
    else:
        query = ranker.index.trial(args.nct_id.strip().upper())
        related = ranker.related(query.nct_id, k, filters=filters, aspect=args.aspect)
    if args.json:
        print(json.dumps([r.to_dict() for r in related], indent=2, ensure_ascii=False))
    else:
        print(_format_list(query, related))
    return 0


def _cmd_search(args) -> int:
    from .index import TrialIndex
    from .ranking import Ranker
    from .ranking.text_query import check_query_text

    k, filters, text = _k(args.k), _filters(args), check_query_text(args.text)
    ranker = Ranker(TrialIndex.load(args.index), diversity=_diversity(args))
    result = ranker.search(text, k, filters=filters)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    read = [f"{kind} {', '.join(values)}" for kind, values in result.matched.items() if values]
    lines = [f"Trials related to: {result.query}", f"read as: {'; '.join(read) if read else 'text only'}", ""]
    if not result.related:
        lines.append("(no trial matches)")
    for r in result.related:
        lines += [r.title, f"{r.nct_id} {r.status or 'UNKNOWN'} {r.phase or 'NA'}",
                  f"    score {r.score:.3f} - {r.why['summary']}"]
    print("\n".join(lines))
    return 0


def _markdown(result) -> str:
    metrics = list(next(iter(result.methods.values())))
    lines = [
        f"{result.mode}: {result.queries} queries ({result.skipped} skipped without a positive candidate)",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for method, values in result.methods.items():
        lines.append(f"| {method} | " + " | ".join(f"{values[m]:.4f}" for m in metrics) + " |")
    return "\n".join(lines)


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate, nested_cross_validation, read_pairs
    from .exceptions import InvalidParameter
    from .index import TrialIndex
    from .ranking import Ranker
    from .ranking.selection import DEFAULT_DESIGNS, DESIGNS, query_signals

    if args.folds < 2:
        raise InvalidParameter(f"--folds must be >= 2, got {args.folds}")
    designs = DEFAULT_DESIGNS if args.designs is None else tuple(d.strip() for d in args.designs.split(",") if d.strip())
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown or not designs:
        raise InvalidParameter(f"unknown design(s) {unknown}; allowed: {', '.join(DESIGNS)}")
    pairs = read_pairs(args.pairs)
    index = TrialIndex.load(args.index)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    cache_dir = _cache_dir(args)
    ranker = Ranker(index, diversity=_diversity(args))
    if args.search:
        return _evaluate_search(args, index, pairs, ranker, cache_dir)
    engine, nested = ranker, None
    if args.cv:
        nested = nested_cross_validation(query_signals(ranker, pairs), designs, n_splits=args.folds)
        engine = nested.engine(ranker)
    result = evaluate(index, pairs, mode=args.mode, engines={"engine": engine}, baselines=baselines, cache_dir=cache_dir)
    comparison = result.comparison("engine", baselines) if baselines else None
    if args.json:
        out = result.to_dict()
        if comparison:
            out.update(comparison)
        if nested is not None:
            out["designs_chosen"] = dict(nested.chosen())
        print(json.dumps(out, indent=2))
    else:
        print(_markdown(result))
        if comparison:
            print()
            print(_comparison_text(comparison, result.queries))
        if nested is not None:
            chosen = ", ".join(f"{d} {n}/{len(nested.folds)}" for d, n in nested.chosen().most_common())
            print(f"\ndesign chosen in the outer folds: {chosen}")
    return 0


def _evaluate_search(args, index, pairs, ranker, cache_dir) -> int:
    from .evaluation.search import evaluate_search

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    found = evaluate_search(index, pairs, kind=args.search, ranker=ranker, baselines=baselines,
                            cache_dir=cache_dir, n_splits=args.folds)
    comparison = found.result.comparison("engine", baselines) if baselines else None
    if args.json:
        print(json.dumps({**found.to_dict(), **(comparison or {})}, indent=2))
        return 0
    print(f"free-text search, query = each labelled trial's {args.search} (the trial left out)")
    print(_markdown(found.result))
    if comparison:
        print()
        print(_comparison_text(comparison, found.result.queries))
    chosen = ", ".join(f"{d} {n}/{sum(found.chosen.values())}" for d, n in found.chosen.most_common())
    print(f"\nreading chosen in the outer folds: {chosen}; shipped: {found.shipped}")
    return 0


def _comparison_text(comparison: dict, queries: int) -> str:
    """Intervals, paired differences and wins/ties/losses as lines of text."""
    lines = [f"95% bootstrap intervals over {queries} queries; engine minus each baseline, paired by query:"]
    for metric, paired in comparison["paired"].items():
        mean, lo, hi = comparison["intervals"][metric]["engine"]
        lines.append(f"  {metric}: engine {mean:.4f} [{lo:.4f}, {hi:.4f}]")
        for baseline, (d, dlo, dhi) in paired.items():
            lines.append(f"    - {baseline:6s} {d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]")
        best = comparison["versus_best"][metric]
        lines.append(f"    vs best baseline ({best['baseline']}): {best['wins']} wins, {best['ties']} ties, "
                     f"{best['losses']} losses")
    return "\n".join(lines)


def _cmd_fit_weights(args) -> int:
    from .evaluation import read_pairs
    from .index import TrialIndex
    from .ranking import FitSettings, fit_weights

    settings = FitSettings(structure=args.structure, objective=args.objective, C=args.C,
                           random_negatives=args.random_negatives, coverage=_coverage_weights(args.coverage))
    pairs = read_pairs(args.pairs)
    index = TrialIndex.load(args.index, mmap=False)
    report = fit_weights(index, pairs, settings)
    for line in report.lines():
        print(line)
    return _save_blend(args, index, report.blend)


def _coverage_weights(text: str | None) -> tuple[float, ...]:
    from .exceptions import InvalidParameter
    from .ranking.selection import COVERAGE_WEIGHTS

    if text is None:
        return COVERAGE_WEIGHTS
    try:
        weights = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise InvalidParameter(f"--coverage takes weights between 0 and 1, comma-separated; got {text!r}") from None
    if not weights or any(not 0 <= w <= 1 for w in weights):
        raise InvalidParameter(f"--coverage takes weights between 0 and 1, comma-separated; got {text!r}")
    return weights


def _save_blend(args, index, blend) -> int:
    blend.fitted_on["pairs_file"] = Path(args.pairs).name
    if args.export:
        Path(args.export).write_text(json.dumps(blend.to_dict(), indent=2) + "\n")
        print(f"wrote {args.export}")
    if args.dry_run:
        return 0
    index.manifest.blend = blend.to_dict()
    if index.related_lists is not None:  # stored lists are the old blend's: rank them again
        _store_lists(index, index.related_lists.k, progress=True)
    build_dir = index.save(args.index)
    print(f"saved the blend with the index: {build_dir}")
    return 0


def _cmd_serve(args) -> int:
    from .exceptions import InvalidParameter
    from .index import TrialIndex
    from .service import RELOAD_TOKEN_ENV, serve

    token = args.reload_token or os.environ.get(RELOAD_TOKEN_ENV) or None
    if args.watch < 0:
        raise InvalidParameter(f"--watch must be >= 0 seconds (0: off), got {args.watch}")
    if args.workers is not None and args.workers < 1:
        raise InvalidParameter(f"--workers must be >= 1, got {args.workers}")
    if args.watch == 0 and (args.workers or os.cpu_count() or 1) > 1:
        raise InvalidParameter("--watch 0 needs --workers 1: several workers follow a new build by watching CURRENT")
    if args.batch_rows < 1:
        raise InvalidParameter(f"--batch-rows must be >= 1, got {args.batch_rows}")
    TrialIndex.load(args.index)  # fail fast with a one-line error before the server starts
    serve(args.index, host=args.host, port=args.port, cors_origins=args.cors_origin,
          reload_token=token, watch_seconds=args.watch or None, workers=args.workers, batch_rows=args.batch_rows)
    return 0


_COMMANDS = {"build": _cmd_build, "update": _cmd_update, "related": _cmd_related, "search": _cmd_search,
             "evaluate": _cmd_evaluate, "fit-weights": _cmd_fit_weights, "serve": _cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    from .exceptions import RelatedTrialsError

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return int(exc.code or 0)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _COMMANDS[args.command](args)
    except RelatedTrialsError as exc:
        print(f"related-trials: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("related-trials: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
