"""Evaluation of free-text search on labelled trial pairs, against baselines, cross-validated.

Each labelled query trial becomes a text: its brief title (``kind="title"``), or its conditions
and interventions as one short sentence (``kind="terms"``: ``"metformin, placebo for type 2
diabetes"``). The text is searched in the index with that trial left out of the list, and the
trial's labelled positives are the relevant set (R@10, nDCG@10, MRR by ranx). The baselines
(TF-IDF, BM25, dense and the fusion of the last two) score the same text over the same trials in
the same run.

The ways a text can be read (:data:`SEARCH_DESIGNS`) are chosen by query-grouped cross-validation:
in each outer fold the design with the best mean R@10 on the other folds' queries is the one
scored on the fold's queries (ties go to the earlier, simpler design), so the ``engine`` row never
saw its own queries' labels. Every design's own row is shown beside it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Literal, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

from .. import defaults
from ..exceptions import InvalidParameter
from ..index.trial_index import TrialIndex
from ..ingest import Trial
from ..ranking import Ranker
from ..ranking.text_query import Vocabulary, text_query
from .baselines import BASELINES, fit_baselines
from .runs import RETRIEVE_DEPTH, RETRIEVE_METRICS, EvaluationResult, _metrics, labelled_queries

__all__ = ["QUERY_KINDS", "SEARCH_DESIGNS", "SearchEvaluation", "evaluate_search", "query_text"]

QueryKind = Literal["title", "terms"]
QUERY_KINDS: tuple[str, ...] = ("title", "terms")
SEARCH_DESIGNS: dict[str, dict[str, bool]] = {
    "text only": {"vocabulary": False, "summary": False},
    "text + summary": {"vocabulary": False, "summary": True},
    "text + terms": {"vocabulary": True, "summary": False},
    "text + terms + summary": {"vocabulary": True, "summary": True},
}
"""How a text is read: as title and whole text only, or also as a summary; with or without the
index's condition and intervention terms it names as the query's conditions and interventions."""


def query_text(trial: Trial, kind: QueryKind) -> str | None:
    """The free text a labelled query trial becomes (``None`` when the trial has nothing for it)."""
    if kind == "title":
        return (trial.brief_title or trial.official_title or "").strip() or None
    if kind == "terms":
        conditions = ", ".join(dict.fromkeys(c.strip() for c in trial.conditions or () if c.strip()))
        interventions = ", ".join(dict.fromkeys(n.strip() for n in trial.intervention_names or () if n.strip()))
        if conditions and interventions:
            return f"{interventions} for {conditions}"
        return conditions or interventions or None
    raise InvalidParameter(f"kind must be one of {', '.join(QUERY_KINDS)}, got {kind!r}")


@dataclasses.dataclass
class SearchEvaluation:
    """The search evaluation's result: ``result.methods`` holds ``engine`` (cross-validated),
    ``design: <name>`` for each design, and the baselines."""

    kind: str
    result: EvaluationResult
    chosen: Counter
    """How many outer folds chose each design."""
    texts: dict[str, str]
    """The query text of each query trial."""
    shipped: str
    """The design the shipped defaults read a text with."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.result.to_dict(), "designs_chosen": dict(self.chosen), "shipped": self.shipped}


def _shipped_design() -> str:
    return "text + terms + summary" if defaults.SEARCH_FILLS_SUMMARY else "text + terms"


def evaluate_search(
    index: TrialIndex,
    pairs: dict[str, dict[str, int]],
    *,
    kind: QueryKind = "title",
    ranker: Ranker | None = None,
    baselines: Sequence[str] = BASELINES,
    cache_dir: str | None = None,
    n_splits: int = 10,
    select_on: str = "R@10",
) -> SearchEvaluation:
    """Search each labelled query trial's text (see the module's docstring) and score the lists.

    Args:
        ranker: the engine (default ``Ranker(index)``).
        n_splits: outer folds of the design choice (at most the number of queries).
        select_on: the metric the design choice maximises on training queries.
    """
    if select_on not in RETRIEVE_METRICS:
        raise InvalidParameter(f"select_on must be one of {', '.join(RETRIEVE_METRICS)}, got {select_on!r}")
    query_text(index.trials[0], kind)  # InvalidParameter for an unknown kind, before any work
    ranker = ranker or Ranker(index)
    labelled, skipped, missing = labelled_queries(index, pairs)
    texts = {q: t for q in labelled if (t := query_text(index.trial(q), kind))}
    skipped += len(labelled) - len(texts)
    if len(texts) < 2:
        raise InvalidParameter(f"the search evaluation needs at least 2 query trials with a {kind} text")
    qrels = {q: {c: 1 for c, label in labelled[q].items() if label} for q in texts}
    vocabularies = {True: ranker.vocabulary, False: Vocabulary({})}
    methods = fit_baselines(index, baselines, cache_dir=cache_dir)
    runs: dict[str, dict] = {f"design: {d}": {} for d in SEARCH_DESIGNS} | {b: {} for b in methods}
    all_rows = np.arange(len(index))
    for q, text in texts.items():
        for design, reading in SEARCH_DESIGNS.items():
            parsed = text_query(text, vocabularies[reading["vocabulary"]], summary=reading["summary"])
            found = ranker.search_query(parsed, RETRIEVE_DEPTH, exclude=q).related
            runs[f"design: {design}"][q] = {x.nct_id: float(RETRIEVE_DEPTH - i) for i, x in enumerate(found)}
        rows = all_rows[all_rows != index.row(q)]
        for name, method in methods.items():
            top = np.argsort(-method.text_scores(text, rows), kind="stable")[:RETRIEVE_DEPTH]
            runs[name][q] = {index.nct_id(rows[i]): float(RETRIEVE_DEPTH - r) for r, i in enumerate(top)}

    per_query: dict = {}
    scores = _metrics(qrels, runs, RETRIEVE_METRICS, per_query)  # every design and baseline, once
    ids = np.array(sorted(texts))
    chosen: Counter = Counter()
    engine_run = {}
    for train, test in GroupKFold(n_splits=min(n_splits, len(ids))).split(ids, groups=ids):
        means = {d: np.mean([per_query[f"design: {d}"][select_on][q] for q in ids[train]]) for d in SEARCH_DESIGNS}
        best = max(SEARCH_DESIGNS, key=lambda d: (round(means[d], 12), -list(SEARCH_DESIGNS).index(d)))
        chosen[best] += 1
        engine_run.update({q: runs[f"design: {best}"][q] for q in ids[test]})
    scores = {**_metrics(qrels, {"engine": engine_run}, RETRIEVE_METRICS, per_query), **scores}
    per_query = {"engine": per_query.pop("engine"), **per_query}
    result = EvaluationResult("search", len(texts), skipped, scores, missing, per_query)
    return SearchEvaluation(kind, result, chosen, texts, _shipped_design())
