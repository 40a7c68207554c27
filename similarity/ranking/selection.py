"""Choosing the ranker's design from labelled queries, and measuring how well that choice generalises.

A *design* turns the labelled queries it is given into a blend: a fusion with nothing fitted, a
fusion whose one weight is chosen on the queries, or a learned logistic blend (one weight per
signal group, per signal, or a cascade of both; each chooses its own ``C`` inside). Every design
is judged on the same two things a related list is for:

- ``rerank``: nDCG@5 of each query's labelled candidates, ordered by the blend;
- ``retrieve``: R@10 of the whole index, i.e. of the ranker's candidate list ordered by the blend
  (positives the candidate search misses count as missed).

:func:`select_design` scores each design by query-grouped cross-validation on the queries it is
given and keeps the simplest design whose mean is within one standard error of the best (a
one-standard-error rule: with a few dozen queries a more flexible design must win clearly), then
fits it on all of them. :func:`similarity.evaluation.nested_cross_validation` runs that whole
selection inside each outer training fold, so an outer test query never reaches any choice: not the
weights, not ``C``, not the design.

Signals are computed once per query (:func:`query_signals`); designs only re-combine them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

from .blend import FUSION_SIGNALS, Blend, FusionBlend, impute
from .coverage import CoveringBlend
from ..exceptions import InvalidParameter
from .signals import Signals
from .tuning import RANDOM_NEGATIVES, LabelledSignals, binary_ndcg, fit_blend, random_negative_ids

__all__ = [
    "QuerySignals",
    "query_signals",
    "Design",
    "DESIGNS",
    "DEFAULT_DESIGNS",
    "Selection",
    "select_design",
    "rerank_ndcg5",
    "retrieve_recall10",
    "choose_coverage",
    "COVERAGE_WEIGHTS",
]


@dataclasses.dataclass
class QuerySignals:
    """One labelled query's signals against its candidates, labelled trials and random negatives.

    ``labels[i]`` is 1, 0, or -1 (unlabelled) for ``signals.rows[i]``; ``candidate[i]`` says whether
    the row is in the ranker's candidate list (what a related list ranks); ``random_negative[i]``
    marks the random index trials added as unrelated for the learned fits.
    """

    query_id: str
    signals: Signals
    labels: np.ndarray
    candidate: np.ndarray
    random_negative: np.ndarray
    n_positives: int

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


def query_signals(
    ranker,
    pairs: Mapping[str, Mapping[str, int]],
    *,
    random_negatives: int = RANDOM_NEGATIVES,
    seed: int = 0,
) -> list[QuerySignals]:
    """Signals of every labelled query with a positive candidate in the ranker's index."""
    index = ranker.index
    rng = np.random.default_rng(seed)
    out = []
    for q, cands in pairs.items():
        cands = {c: int(l) for c, l in cands.items() if c in index and c != q}
        if q not in index or not any(cands.values()):
            continue
        features = ranker.features(q)
        candidates = [int(r) for r in ranker.candidates(features, ranker.n_candidates)]
        labelled = {index.row(c): l for c, l in cands.items()}
        randoms = [index.row(c) for c in random_negative_ids(index, rng, random_negatives, q, pairs.get(q, {}))]
        rows = list(dict.fromkeys([*candidates, *labelled, *randoms]))
        signals = ranker.signals.compute(features, np.array(rows, dtype=np.int64))
        out.append(
            QuerySignals(
                query_id=q,
                signals=signals,
                labels=np.array([labelled.get(r, -1) for r in rows]),
                candidate=np.isin(rows, candidates),
                random_negative=np.isin(rows, randoms),
                n_positives=sum(1 for l in labelled.values() if l),
            )
        )
    if not out:
        raise InvalidParameter("no labelled query has a positive candidate in the index")
    return out


# ------------------------------------------------------------------ what a design is judged on
def rerank_ndcg5(blend: Blend, query: QuerySignals) -> float:
    """nDCG@5 of the query's labelled candidates in the blend's order (binary relevance)."""
    positions = np.flatnonzero(query.labelled)
    _, order = blend.rank(query.signals.take(positions))
    return binary_ndcg(query.labels[positions][order], 5)


def retrieve_recall10(blend: Blend, query: QuerySignals) -> float:
    """R@10 of the blend's order of the candidate list (the labelled positives are relevant)."""
    positions = np.flatnonzero(query.candidate)
    if not len(positions) or not query.n_positives:
        return 0.0
    _, order = blend.rank(query.signals.take(positions))
    return float((query.labels[positions][order][:10] == 1).sum() / query.n_positives)


def criterion(blend: Blend, query: QuerySignals) -> float:
    """What selection maximises: the mean of rerank nDCG@5 and retrieve R@10."""
    return 0.5 * (rerank_ndcg5(blend, query) + retrieve_recall10(blend, query))


# ------------------------------------------------------------------ designs
def _labelled_signals(queries: Sequence[QuerySignals]) -> LabelledSignals:
    """The learned fits' training data: labelled candidates and random negatives, imputed."""
    blocks, ys, qs, cs = [], [], [], []
    for q in queries:
        keep = q.labelled | q.random_negative
        part = q.signals.take(np.flatnonzero(keep))
        blocks.append(impute(part))
        ys.append(np.where(q.labels[keep] == 1, 1, 0))
        qs.extend([q.query_id] * int(keep.sum()))
        cs.extend(part.rows.tolist())
    names = queries[0].signals.names
    return LabelledSignals(names, np.vstack(blocks), np.concatenate(ys), np.array(qs), np.array(cs))


@dataclasses.dataclass(frozen=True)
class Design:
    """A way to turn labelled queries into a blend. ``parameters``: how many are fitted on labels."""

    name: str
    parameters: int
    fit: Callable[[Sequence[QuerySignals]], Blend]
    description: str = ""


def _fixed(blend: Blend) -> Callable[[Sequence[QuerySignals]], Blend]:
    """Nothing fitted: a fresh copy each time (``fitted_on`` is the caller's to fill)."""
    return lambda queries: dataclasses.replace(blend, fitted_on={})


def _learned(structure: str) -> Callable[[Sequence[QuerySignals]], Blend]:
    def fit(queries: Sequence[QuerySignals]) -> Blend:
        blend = fit_blend(_labelled_signals(queries), structure=structure, C="auto")
        blend.fitted_on["random_negatives"] = RANDOM_NEGATIVES
        return blend

    return fit


SEMANTIC_SHARES: tuple[float, ...] = (0.3, 0.5, 0.7)


def _fusion_share(queries: Sequence[QuerySignals]) -> Blend:
    """The fusion whose semantic signals take the share (of :data:`SEMANTIC_SHARES`) that scores best
    on ``queries`` (the equal-weight share on ties); the two lexical signals share the rest."""
    names = queries[0].signals.names
    n_fields = sum(1 for n in names if n.startswith("field:")) or 1
    lexical = [n for n, _ in FUSION_SIGNALS if n != "field:"]
    best, best_value = None, -1.0
    for share in sorted(SEMANTIC_SHARES, key=lambda s: abs(s - n_fields / (n_fields + len(lexical)))):
        weights = {"field:": share / n_fields, **{n: (1 - share) / len(lexical) for n in lexical}}
        blend = FusionBlend(weights, fitted_on={"semantic_share": share, "queries": len(queries)})
        value = float(np.mean([criterion(blend, q) for q in queries]))
        if value > best_value + 1e-9:
            best, best_value = blend, value
    return best


DESIGNS: dict[str, Design] = {
    d.name: d
    for d in (
        Design("fusion", 0, _fixed(FusionBlend()),
               "z-score fusion of every field cosine, BM25 and the BM25 cosine, equal weights"),
        Design("fusion+structured", 0, _fixed(FusionBlend({"field:": 1.0, "attr:": 1.0, "lexical": 1.0, "lexical_cosine": 1.0})),
               "the same fusion with every structured signal too"),
        Design("fusion, semantic share", 1, _fusion_share,
               f"the fusion with the semantic signals' share of the weight chosen from {SEMANTIC_SHARES}"),
        Design("learned per group", 3, _learned("groups"),
               "logistic regression, one weight per signal group (C chosen inside)"),
        Design("learned per signal", 18, _learned("signals"),
               "logistic regression, one weight per signal (C chosen inside)"),
        Design("cascade", 21, _learned("cascade"),
               "the previous default: a per-group blend retrieves, a per-signal blend reranks its top 10"),
    )
}
"""Every design the selection may choose (``parameters``: weights fitted on labels, roughly)."""

DEFAULT_DESIGNS: tuple[str, ...] = tuple(DESIGNS)


@dataclasses.dataclass
class Selection:
    """The design chosen on some queries, fitted on all of them, and the inner scores behind it."""

    design: str
    blend: Blend
    scores: dict[str, float]
    """Each design's mean inner cross-validated criterion."""
    standard_error: float
    queries: tuple[str, ...]
    coverage: float = 0.0
    """The aspect-coverage weight chosen with it (:func:`choose_coverage`; 0: none)."""


def _one_standard_error(values: Mapping, simplest_first: Sequence) -> tuple:
    """The one-standard-error rule over per-query ``values`` of each choice: the first of
    ``simplest_first`` whose mean is within one standard error (of its per-query difference from
    the best choice) of the best mean, and that standard error."""
    means = {key: float(np.mean(v)) for key, v in values.items()}
    best = max(simplest_first, key=lambda key: means[key])  # ties: the simplest
    for key in simplest_first:
        diff = values[best] - values[key]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if means[key] >= means[best] - se:
            return key, se
    return best, 0.0


COVERAGE_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5)
"""The xQuAD weights :func:`choose_coverage` chooses among (:class:`~similarity.ranking.coverage.CoveringBlend`)."""


def choose_coverage(queries: Sequence[QuerySignals], blend: Blend,
                    weights: Sequence[float] = COVERAGE_WEIGHTS) -> tuple[float, Blend]:
    """The aspect-coverage weight for ``blend`` on ``queries``, and the blend with it
    (:class:`~similarity.ranking.coverage.CoveringBlend`; weight 0: ``blend`` itself).

    The one-standard-error rule of :func:`select_design`, toward less coverage: the smallest weight
    whose mean criterion is within one standard error (of its per-query difference from the best)
    of the best weight's. Coverage re-orders a list for what the labels do not judge (the kinds of
    relation its head shows), so it is kept only where the labels say it clearly helps. With one
    weight, that one (``fit-weights --coverage W`` fixes it).
    """
    weights = sorted(dict.fromkeys(float(w) for w in weights))
    if not weights or any(not 0 <= w <= 1 for w in weights):
        raise InvalidParameter(f"coverage weights must be in [0, 1], got {list(weights)}")
    blends = {w: blend if w == 0 else CoveringBlend(blend, w) for w in weights}
    if len(weights) == 1:
        return weights[0], blends[weights[0]]
    values = {w: np.array([criterion(b, q) for q in queries]) for w, b in blends.items()}
    means = {w: float(v.mean()) for w, v in values.items()}
    best, _ = _one_standard_error(values, weights)
    if best == 0:
        return best, blend
    scores = {f"{w:g}": round(m, 4) for w, m in means.items()}
    return best, dataclasses.replace(blends[best], fitted_on={**blend.fitted_on, "coverage_scores": scores})


def _inner_scores(queries: Sequence[QuerySignals], designs: Sequence[Design], n_splits: int) -> dict[str, np.ndarray]:
    """Per design, each query's criterion with the design fitted on the other inner folds."""
    groups = np.array([q.query_id for q in queries])
    values = {d.name: np.zeros(len(queries)) for d in designs}
    for train, test in GroupKFold(n_splits=n_splits).split(groups, groups=groups):
        fold = [queries[i] for i in train]
        for design in designs:
            blend = design.fit(fold)
            for i in test:
                values[design.name][i] = criterion(blend, queries[i])
    return values


def select_design(
    queries: Sequence[QuerySignals],
    designs: Sequence[str] = DEFAULT_DESIGNS,
    *,
    n_splits: int = 4,
    coverage: Sequence[float] = COVERAGE_WEIGHTS,
) -> Selection:
    """Choose among ``designs`` by ``n_splits``-fold cross-validation over ``queries`` alone.

    The simplest design (fewest fitted parameters) whose mean criterion is within one standard
    error (of its per-query difference from the best design) of the best is chosen, then fitted on
    every query given. A single design is fitted without cross-validation. Then the aspect-coverage
    weight is chosen among ``coverage`` for that blend on the same queries (:func:`choose_coverage`).
    """
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown or not designs:
        raise InvalidParameter(f"unknown design(s) {unknown}; allowed: {', '.join(DESIGNS)}")
    chosen = [DESIGNS[d] for d in dict.fromkeys(designs)]
    ids = tuple(q.query_id for q in queries)
    if len(chosen) == 1:
        weight, blend = choose_coverage(queries, chosen[0].fit(queries), coverage)
        return Selection(chosen[0].name, blend, {}, 0.0, ids, weight)
    if len(queries) < 2:
        raise InvalidParameter("choosing a design needs at least 2 labelled queries")
    values = _inner_scores(queries, chosen, min(n_splits, len(queries)))
    means = {name: float(v.mean()) for name, v in values.items()}
    name, se = _one_standard_error(values, [d.name for d in sorted(chosen, key=lambda d: d.parameters)])
    winner = DESIGNS[name]
    weight, blend = choose_coverage(queries, winner.fit(queries), coverage)
    return Selection(winner.name, blend, means, se, ids, weight)
