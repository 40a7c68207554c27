"""Evaluation on labelled trial pairs (``query_id  candidate_id  label``), engine vs baselines.

``rerank`` follows the Trial2Vec / PyTrial protocol: each query's labelled candidates are ranked,
and queries without a positive candidate are skipped and counted. ``retrieve`` ranks the whole
index for each query (the query itself excluded); labelled positives are the relevant trials.
Metrics come from ranx. Each method's per-query values are kept, so the result also gives 95%
bootstrap intervals (queries resampled with replacement), paired differences between methods
with their intervals, and per-query wins, ties and losses.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence, Union

import numpy as np

from .baselines import BASELINES, fit_baselines
from ..exceptions import InvalidParameter, SourceError
from ..index.trial_index import TrialIndex
from ..ranking.ranker import Ranker

__all__ = [
    "read_pairs",
    "labelled_queries",
    "evaluate",
    "EvaluationResult",
    "bootstrap_interval",
    "RERANK_METRICS",
    "RETRIEVE_METRICS",
    "HEADLINE",
]

logger = logging.getLogger(__name__)

Mode = Literal["rerank", "retrieve"]

RERANK_METRICS = {
    "P@1": "precision@1", "P@2": "precision@2", "P@5": "precision@5",
    "R@1": "recall@1", "R@2": "recall@2", "R@5": "recall@5",
    "nDCG@5": "ndcg@5", "nDCG@10": "ndcg@10", "MAP": "map", "MRR": "mrr",
}
RETRIEVE_METRICS = {"R@10": "recall@10", "R@50": "recall@50", "nDCG@10": "ndcg@10", "MRR": "mrr@100"}
RETRIEVE_DEPTH = 100
HEADLINE = {"rerank": ("nDCG@5", "P@1", "MAP"), "retrieve": ("R@10", "nDCG@10", "MRR"),
            "search": ("R@10", "nDCG@10", "MRR")}
"""The metrics whose intervals and paired differences a report shows, per mode."""
BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_interval(values, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-query ``values`` and its 95% percentile bootstrap interval (queries resampled)."""
    values = np.asarray(list(values), dtype=np.float64)
    if not len(values):
        raise InvalidParameter("no values to bootstrap")
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))

Engine = Union[Ranker, Callable[[str], Ranker]]
"""A ranker, or a function giving the ranker of each query (a cross-validated blend)."""


def read_pairs(path: str | Path) -> dict[str, dict[str, int]]:
    """Read a pairs TSV into ``{query_id: {candidate_id: label}}``.

    Raises:
        SourceError: the file cannot be read.
        InvalidParameter: wrong header, or a row with a label other than 0/1.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, None)
            if header != ["query_id", "candidate_id", "label"]:
                raise InvalidParameter(
                    f"{path}: header must be 'query_id<TAB>candidate_id<TAB>label', got {header!r}"
                )
            pairs: dict[str, dict[str, int]] = defaultdict(dict)
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != 3 or row[2].strip() not in ("0", "1"):
                    raise InvalidParameter(f"{path}, line {line}: expected query_id, candidate_id, 0/1; got {row!r}")
                pairs[row[0].strip()][row[1].strip()] = int(row[2])
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read pairs file {path}: {exc}") from None
    if not pairs:
        raise InvalidParameter(f"{path}: no labelled pairs")
    return dict(pairs)


@dataclasses.dataclass
class EvaluationResult:
    mode: str
    queries: int
    skipped: int
    methods: dict[str, dict[str, float]]
    missing: list[str]
    per_query: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict, repr=False)
    """``{method: {metric: {query_id: value}}}``, for paired comparisons (not in ``to_dict``)."""

    def values(self, method: str, metric: str) -> np.ndarray:
        """Per-query values of ``method`` on ``metric``, in a fixed query order."""
        per = self.per_query[method][metric]
        return np.array([per[q] for q in sorted(per)])

    def interval(self, method: str, metric: str) -> tuple[float, float, float]:
        """Mean and 95% bootstrap interval of ``method`` on ``metric``."""
        return bootstrap_interval(self.values(method, metric))

    def paired(self, a: str, b: str, metric: str) -> tuple[float, float, float]:
        """Mean per-query difference ``a - b`` on ``metric`` and its 95% bootstrap interval."""
        return bootstrap_interval(self.values(a, metric) - self.values(b, metric))

    def wins_ties_losses(self, a: str, b: str, metric: str) -> tuple[int, int, int]:
        """Queries where ``a`` scores above, equal to (within 1e-9), and below ``b``."""
        diff = self.values(a, metric) - self.values(b, metric)
        return int((diff > 1e-9).sum()), int((np.abs(diff) <= 1e-9).sum()), int((diff < -1e-9).sum())

    def best(self, metric: str, among: Sequence[str]) -> str:
        """The method of ``among`` with the highest mean on ``metric``."""
        return max(among, key=lambda m: self.methods[m][metric])

    def comparison(self, engine: str, baselines: Sequence[str]) -> dict:
        """Intervals, paired differences against each baseline, and wins/ties/losses against the
        best baseline, for the headline metrics of this mode."""
        out: dict = {"intervals": {}, "paired": {}, "versus_best": {}}
        for metric in HEADLINE[self.mode]:
            out["intervals"][metric] = {m: _rounded(self.interval(m, metric)) for m in self.methods}
            out["paired"][metric] = {b: _rounded(self.paired(engine, b, metric)) for b in baselines}
            best = self.best(metric, baselines)
            w, t, l = self.wins_ties_losses(engine, best, metric)
            out["versus_best"][metric] = {"baseline": best, "wins": w, "ties": t, "losses": l}
        return out

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "queries": self.queries,
            "skipped": self.skipped,
            "missing": self.missing,
            "methods": self.methods,
        }


def _rounded(interval: tuple[float, float, float]) -> list[float]:
    return [round(x, 4) for x in interval]


def _metrics(qrels: dict, runs: dict[str, dict], names: dict[str, str], per_query: dict | None = None) -> dict[str, dict[str, float]]:
    """Mean metrics per method; ``per_query``, when given, receives each query's values."""
    from ranx import Qrels, Run, evaluate as ranx_evaluate

    qrels_obj = Qrels(qrels)
    out = {}
    for method, run in runs.items():
        run_obj = Run(run, name=method)
        scores = ranx_evaluate(qrels_obj, run_obj, list(names.values()), make_comparable=True)
        out[method] = {key: round(float(scores[name]), 4) for key, name in names.items()}
        if per_query is not None:
            per_query[method] = {key: {q: float(v) for q, v in run_obj.scores[name].items()} for key, name in names.items()}
    return out


def _rank_dict(ids: Sequence[str], scores: np.ndarray) -> dict[str, float]:
    return _order_dict(ids, np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))


def _order_dict(ids: Sequence[str], order: np.ndarray) -> dict[str, float]:
    # ranx breaks ties by id; rank-based run scores keep each method's own order instead.
    n = len(order)
    return {ids[i]: float(n - r) for r, i in enumerate(order)}


def labelled_queries(index: TrialIndex, pairs: dict[str, dict[str, int]]) -> tuple[dict[str, dict[str, int]], int, list[str]]:
    """The queries of ``pairs`` that the index holds with at least one positive candidate it holds,
    how many others were skipped, and the labelled trials the index lacks (logged)."""
    missing = sorted({q for q in pairs if q not in index} | {c for cs in pairs.values() for c in cs if c not in index})
    if missing:
        logger.warning("%d labelled trials are not in the index and are left out: %s", len(missing), missing[:10])
    queries, skipped = {}, 0
    for q, cands in pairs.items():
        cands = {c: l for c, l in cands.items() if c in index}
        if q not in index or not any(cands.values()):
            skipped += 1
            continue
        queries[q] = cands
    if not queries:
        raise InvalidParameter("no query with a positive candidate is in the index")
    return queries, skipped, missing


def evaluate(
    index: TrialIndex,
    pairs: dict[str, dict[str, int]],
    *,
    mode: Mode = "rerank",
    ranker: Ranker | None = None,
    engines: Mapping[str, Engine] | None = None,
    baselines: Sequence[str] = BASELINES,
    cache_dir: str | None = None,
) -> EvaluationResult:
    """Evaluate the engine and ``baselines`` on ``pairs`` over the trials of ``index``.

    Args:
        ranker: the engine (default ``Ranker(index)``), reported as ``engine``.
        engines: several engine variants by name instead (ablations), each a :class:`Ranker` or
            a function ``query_id -> Ranker``; all are scored in the same run as the baselines.
    """
    if mode not in ("rerank", "retrieve"):
        raise InvalidParameter(f"mode must be 'rerank' or 'retrieve', got {mode!r}")
    if engines is None:
        engines = {"engine": ranker or Ranker(index)}
    if not engines or set(engines) & set(baselines):
        raise InvalidParameter(f"engine names must be given and differ from the baselines: {list(engines)}")
    queries, skipped, missing = labelled_queries(index, pairs)
    qrels = {q: {c: 1 for c, l in cands.items() if l} for q, cands in queries.items()}

    if mode == "rerank":
        needed = sorted({index.row(x) for q, cs in queries.items() for x in (q, *cs)})
    else:
        needed = None
    methods = fit_baselines(index, baselines, cache_dir=cache_dir, rows=needed)
    runs: dict[str, dict] = {**{name: {} for name in engines}, **{name: {} for name in methods}}
    all_rows = np.arange(len(index))
    for q, cands in queries.items():
        q_row = index.row(q)
        rankers = {name: e if isinstance(e, Ranker) else e(q) for name, e in engines.items()}
        if mode == "rerank":
            ids = list(cands)
            rows = np.array([index.row(c) for c in ids])
            for name, r in rankers.items():
                runs[name][q] = _order_dict(ids, r.rank(r.features(q), rows)[2])
            for name, method in methods.items():
                runs[name][q] = _rank_dict(ids, method.scores(q_row, rows))
        else:
            for name, r in rankers.items():
                related = r.related(q, k=RETRIEVE_DEPTH)
                runs[name][q] = {x.nct_id: float(RETRIEVE_DEPTH - i) for i, x in enumerate(related)}
            rows = all_rows[all_rows != q_row]
            for name, method in methods.items():
                scores = method.scores(q_row, rows)
                top = np.argsort(-scores, kind="stable")[:RETRIEVE_DEPTH]
                runs[name][q] = {index.nct_id(rows[i]): float(RETRIEVE_DEPTH - r) for r, i in enumerate(top)}
    names = RERANK_METRICS if mode == "rerank" else RETRIEVE_METRICS
    per_query: dict = {}
    methods = _metrics(qrels, runs, names, per_query)
    return EvaluationResult(mode, len(queries), skipped, methods, missing, per_query)
