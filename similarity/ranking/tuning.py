"""Learning the blend from labelled pairs, and cross-validating it by query.

The signals of every labelled ``(query, candidate)`` pair (:mod:`similarity.ranking.signals`, unavailable
ones imputed as the blend does at ranking time) are the features; the label is the target.

- ``objective="pairwise"`` fits a logistic regression on the *differences* between a
  positive and a negative candidate of the same query (a RankNet/RankSVM-style linear ranker):
  only the order inside a query matters for a related list, not how related trials of one topic
  compare with those of another.
- ``objective="pointwise"`` (default) fits it on the pairs themselves (balanced classes).

Three structures:

- ``structure="groups"`` learns one weight per signal *group* (semantic, structured, lexical);
  inside a group the signals keep the proportions of the hand-set prior
  (:class:`~similarity.ranking.blend.BlendWeights`). Three free weights instead of sixteen.
- ``structure="signals"`` learns one weight per signal.
- ``structure="cascade"`` (default) fits both into a :class:`~similarity.ranking.blend.CascadeBlend`: a
  retrieve blend, one weight per group over the semantic and lexical signals, orders the whole
  index's candidates; a rerank blend, one weight per signal, re-orders its first ten. On
  trialsim-dev's 17 queries the per-signal fit learns what separates a topic's labelled hard
  negatives (exact intervention and condition names, design attributes): the best rerank blend
  (nDCG@5 0.953 vs 0.917 grouped, cross-validated), but over the whole index those names match
  hundreds of trials of one disease and retrieve R@10 falls (0.650 vs 0.706 grouped, 0.718
  grouped without the structured signals). Each stage does what its fit is good at: see
  benchmarks/quality.md.

Features are scaled before fitting and the coefficients mapped back to the raw signals, so a
:class:`~similarity.ranking.blend.LearnedBlend` applies them directly. With ``nonnegative=True`` signals
that get a negative weight are dropped and the model refitted until all weights are >= 0: with a
few hundred labels a negative weight on a similarity is noise, and it would make ``why`` claim
that agreeing on something made a trial *less* related.

:func:`cross_validate_blend` gives every query the blend fitted on the *other* queries
(``GroupKFold`` by query, leave-one-query-out by default), so no query is scored by weights fitted
on it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, Mapping, Sequence, Union

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from .blend import RERANK_DEPTH, Blend, BlendWeights, CascadeBlend, LearnedBlend, impute
from ..exceptions import InvalidParameter
from .signals import signal_group

__all__ = [
    "LabelledSignals",
    "labelled_signals",
    "fit_blend",
    "cross_validate_blend",
    "cross_validated_engine",
    "refit_params",
    "rerank_ndcg",
    "C_GRID",
    "RANDOM_NEGATIVES",
    "STRUCTURES",
]

Objective = Literal["pairwise", "pointwise"]
Structure = Literal["cascade", "groups", "signals"]
STRUCTURES: tuple[str, ...] = ("cascade", "groups", "signals")

RANDOM_NEGATIVES = 30
"""Random index trials added per query as unrelated when fitting the shipped blend."""

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Regularisation strengths tried by ``C="auto"`` (chosen by an inner 4-fold CV by query)."""


@dataclasses.dataclass
class LabelledSignals:
    """Imputed signal values of labelled pairs: ``X[i]`` is pair ``(queries[i], candidates[i])``."""

    names: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    queries: np.ndarray
    candidates: np.ndarray

    def subset(self, mask: np.ndarray) -> "LabelledSignals":
        return LabelledSignals(self.names, self.X[mask], self.y[mask], self.queries[mask], self.candidates[mask])


def labelled_signals(
    ranker,
    pairs: Mapping[str, Mapping[str, int]],
    *,
    random_negatives: int = 0,
    candidate_negatives: int = 0,
    seed: int = 0,
) -> LabelledSignals:
    """Signals of the labelled pairs whose query and candidate are both in the ranker's index.

    Queries without a positive candidate in the index are left out (they cannot teach an order).
    ``random_negatives`` adds that many random index trials per query as unrelated: labelled
    candidates are hard negatives (same topic), while a related list is drawn from the whole
    index, where most trials are plainly unrelated. ``candidate_negatives`` adds that many
    unlabelled trials drawn from the query's own search candidates (the ones the blend re-ranks
    in a related list) as unrelated: the competitors a labelled positive meets in retrieval.
    """
    index = ranker.index
    rng = np.random.default_rng(seed)
    blocks, ys, qs, cs = [], [], [], []
    for q, cands in pairs.items():
        cands = {c: int(l) for c, l in cands.items() if c in index and c != q}
        if q not in index or not any(cands.values()):
            continue
        for c in random_negative_ids(index, rng, random_negatives, q, pairs.get(q, {})):
            cands[c] = 0
        if candidate_negatives:
            pool = [index.nct_id(r) for r in ranker.candidates(ranker.features(q), ranker.n_candidates)]
            pool = [c for c in pool if c != q and c not in cands and c not in pairs.get(q, {})]
            for i in rng.choice(len(pool), size=min(candidate_negatives, len(pool)), replace=False):
                cands[pool[i]] = 0
        if all(cands.values()):
            continue
        ids = list(cands)
        signals = ranker.signals.compute(ranker.features(q), np.array([index.row(c) for c in ids]))
        blocks.append(impute(signals))
        ys.extend(cands[c] for c in ids)
        qs.extend([q] * len(ids))
        cs.extend(ids)
    if not blocks:
        raise InvalidParameter("no labelled query has both a positive and a negative candidate in the index")
    return LabelledSignals(ranker.signals.names, np.vstack(blocks), np.array(ys), np.array(qs), np.array(cs))


def random_negative_ids(index, rng: np.random.Generator, n: int, query_id: str, labelled) -> list[str]:
    """Up to ``n`` random index trials, other than the query and its ``labelled`` candidates."""
    if not n:
        return []
    ids = (index.nct_id(int(row)) for row in rng.choice(len(index), size=min(n, len(index)), replace=False))
    return [c for c in ids if c != query_id and c not in labelled]


def binary_ndcg(ranked_labels: np.ndarray, k: int = 5) -> float:
    """nDCG@k of 0/1 labels listed in ranked order (equals ranx's for binary relevance)."""
    discounts = 1 / np.log2(np.arange(2, k + 2))
    top = np.asarray(ranked_labels, dtype=float)[:k]
    ideal = np.sort(np.asarray(ranked_labels, dtype=float))[::-1][:k]
    return float((top * discounts[: len(top)]).sum() / max((ideal * discounts[: len(ideal)]).sum(), 1e-12))


def rerank_ndcg(data: LabelledSignals, scores: np.ndarray, k: int = 5) -> float:
    """Mean nDCG@k (ranx) of ranking each query's labelled candidates by ``scores``."""
    from ranx import Qrels, Run, evaluate

    qrels, run = {}, {}
    for q in np.unique(data.queries):
        rows = np.flatnonzero(data.queries == q)
        qrels[str(q)] = {str(data.candidates[i]): 1 for i in rows if data.y[i]}
        order = rows[np.argsort(-scores[rows], kind="stable")]
        run[str(q)] = {str(data.candidates[i]): float(len(rows) - r) for r, i in enumerate(order)}
    return float(evaluate(Qrels(qrels), Run(run), f"ndcg@{k}", make_comparable=True))


def _mean_ndcg(data: LabelledSignals, scores: np.ndarray, k: int = 5) -> float:
    """Mean binary nDCG@k per query, in NumPy (the inner loop of ``C="auto"``; equals ranx's)."""
    values = []
    for q in np.unique(data.queries):
        rows = data.queries == q
        values.append(binary_ndcg(data.y[rows][np.argsort(-scores[rows], kind="stable")], k))
    return float(np.mean(values))


def _choose_C(data: LabelledSignals, grid: Sequence[float], **fit_params) -> float:
    """The C of ``grid`` with the best query-grouped 4-fold nDCG@5 on ``data`` (smallest on ties)."""
    best, best_C = -1.0, grid[0]
    n_splits = min(4, len(np.unique(data.queries)))
    for C in grid:
        scores = np.zeros(len(data.y))
        for q, blend in cross_validate_blend(data, C=C, n_splits=n_splits, **fit_params).items():
            rows = data.queries == q
            scores[rows] = blend.decision(data.names, data.X[rows])
        value = _mean_ndcg(data, scores)
        if value > best + 1e-9:
            best, best_C = value, C
    return best_C


def _pairwise(data: LabelledSignals) -> tuple[np.ndarray, np.ndarray]:
    diffs = []
    for q in np.unique(data.queries):
        rows = data.queries == q
        pos, neg = data.X[rows & (data.y == 1)], data.X[rows & (data.y == 0)]
        diffs.append((pos[:, None, :] - neg[None, :, :]).reshape(-1, data.X.shape[1]))
    d = np.vstack(diffs)
    return np.vstack([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))]


def _basis(names: tuple[str, ...], structure: Structure, use: np.ndarray) -> np.ndarray:
    """``(signals, features)`` matrix: the features the regression sees are ``X @ basis``.

    ``signals``: the identity. ``groups``: one column per group of the used signals, its entries
    the prior's within-group weights normalised to sum to 1 (the group's weighted mean).
    """
    if structure == "signals":
        return np.eye(len(names))[:, use]
    prior = BlendWeights().inner_weights()
    group_of = [signal_group(n) for n in names]
    columns = []
    for group in dict.fromkeys(group_of):
        w = np.array([prior.get(n, 1.0) if g == group and u else 0.0 for n, g, u in zip(names, group_of, use)])
        if w.sum() > 0:
            columns.append(w / w.sum())
    return np.stack(columns, axis=1)


def _fit_once(data: LabelledSignals, basis: np.ndarray, keep: np.ndarray, objective: Objective, C: float) -> np.ndarray:
    """Unconstrained coefficients of the features ``data.X @ basis`` (only columns ``keep`` fitted)."""
    if objective == "pairwise":
        X, y = _pairwise(data)
        X = (X @ basis)[:, keep]
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=C, fit_intercept=False, solver="newton-cholesky", max_iter=200).fit(X / scale, y)
    else:
        X, y = (data.X @ basis)[:, keep], data.y
        center, scale = X.mean(axis=0), X.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(C=C, class_weight="balanced", solver="newton-cholesky", max_iter=200)
        model.fit((X - center) / scale, y)
    coef = np.zeros(basis.shape[1])
    coef[keep] = model.coef_[0] / scale
    return coef


def _used(names: tuple[str, ...], exclude: tuple[str, ...]) -> np.ndarray:
    """Mask of the signals ``exclude`` (names or prefixes such as ``"attr:"``) leaves in."""
    return np.array([not any(n == e or n.startswith(e) for e in exclude) for n in names])


def fit_blend(
    data: LabelledSignals,
    *,
    objective: Objective = "pointwise",
    structure: Structure = "cascade",
    C: Union[float, Literal["auto"]] = "auto",
    nonnegative: bool = True,
    exclude: tuple[str, ...] = (),
) -> Blend:
    """Fit a :class:`LearnedBlend` (or a :class:`CascadeBlend` of two) on labelled signals.

    Args:
        data: from :func:`labelled_signals`.
        objective: ``pairwise`` (order inside a query) or ``pointwise`` (each pair on its own).
        structure: ``groups`` (one weight per signal group, the prior's proportions inside it),
            ``signals`` (one weight per signal), or ``cascade``: a ``groups`` fit without the
            structured signals to retrieve, a ``signals`` fit to rerank the first
            :data:`~similarity.ranking.blend.RERANK_DEPTH` (each stage with its own ``C``).
        C: inverse L2 regularisation strength of the logistic regression; ``"auto"`` picks it from
            :data:`C_GRID` by 4-fold (by query) nDCG@5 on ``data`` alone (nested inside
            :func:`cross_validate_blend`, so the held-out query never chooses it).
        nonnegative: drop signals with negative weights and refit until none is left.
        exclude: signal names (or group prefixes such as ``"field:"``) never used.
    """
    if objective not in ("pairwise", "pointwise"):  # checked first: "auto" fits many models
        raise InvalidParameter(f"objective must be 'pairwise' or 'pointwise', got {objective!r}")
    if structure not in STRUCTURES:
        raise InvalidParameter(f"structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    if len(np.unique(data.y)) < 2:
        raise InvalidParameter("labelled pairs need both positive and negative labels")
    if structure == "cascade":
        params = {"objective": objective, "C": C, "nonnegative": nonnegative}
        structured = tuple(n for n in data.names if signal_group(n) == "structured")
        used = _used(data.names, exclude)
        if (used & ~np.isin(data.names, structured)).any():  # the retrieve stage leaves them out when it has others
            retrieve = fit_blend(data, structure="groups", exclude=(*exclude, *structured), **params)
        else:
            retrieve = fit_blend(data, structure="groups", exclude=exclude, **params)
        rerank = fit_blend(data, structure="signals", exclude=exclude, **params)
        fitted_on = {**retrieve.fitted_on, "structure": structure,
                     "C": {"retrieve": retrieve.fitted_on["C"], "rerank": rerank.fitted_on["C"]}}
        return CascadeBlend(retrieve, rerank, depth=RERANK_DEPTH, fitted_on=fitted_on)
    if C == "auto":
        if len(np.unique(data.queries)) < 3:
            C = 1.0
        else:
            C = _choose_C(data, C_GRID, objective=objective, structure=structure, nonnegative=nonnegative,
                          exclude=exclude)
    if not isinstance(C, (int, float)) or C <= 0:
        raise InvalidParameter(f"C must be > 0 or 'auto', got {C!r}")
    use = _used(data.names, exclude)
    if not use.any():
        raise InvalidParameter(f"exclude={exclude} leaves no signal to fit")
    basis = _basis(data.names, structure, use)
    keep = np.ones(basis.shape[1], dtype=bool)
    while True:
        coef = _fit_once(data, basis, keep, objective, C)
        negative = keep & (coef < 0)
        if not nonnegative or not negative.any() or negative.sum() == keep.sum():
            break
        keep &= ~negative
    if nonnegative:
        coef = np.maximum(coef, 0.0)
    coef = basis @ coef
    # Only the order matters: scale so that a typical score lies in [0, 1].
    total = np.abs(coef).sum() or 1.0
    fitted_on = {
        "pairs": int(len(data.y)),
        "queries": int(len(np.unique(data.queries))),
        "objective": objective,
        "structure": structure,
        "C": float(C),
        "nonnegative": nonnegative,
    }
    return LearnedBlend(coef=tuple(zip(data.names, (coef / total).round(6).tolist())), fitted_on=fitted_on)


def cross_validate_blend(
    data: LabelledSignals, *, n_splits: int | None = None, **fit_params
) -> dict[str, Blend]:
    """For every query, the blend fitted on the other queries' pairs only.

    Args:
        data: from :func:`labelled_signals`.
        n_splits: ``GroupKFold`` folds by query; ``None`` = leave one query out.
        **fit_params: passed to :func:`fit_blend`.
    """
    groups = data.queries
    n_queries = len(np.unique(groups))
    if n_queries < 2:
        raise InvalidParameter("cross-validation needs at least 2 labelled queries")
    if n_splits is not None and not 2 <= n_splits <= n_queries:
        raise InvalidParameter(f"n_splits must be between 2 and {n_queries} (queries), got {n_splits}")
    splitter = LeaveOneGroupOut() if n_splits is None else GroupKFold(n_splits=n_splits)
    blends: dict[str, Blend] = {}
    for train, test in splitter.split(data.X, data.y, groups):
        blend = fit_blend(data.subset(np.isin(np.arange(len(groups)), train)), **fit_params)
        for q in np.unique(groups[test]):
            blends[str(q)] = blend
    return blends


def refit_params(blend: LearnedBlend | CascadeBlend) -> dict:
    """The settings a saved learned blend was fitted with, as :func:`cross_validated_engine` takes them.

    Blends saved before a setting existed get the value they were fitted with then (one weight per
    signal, no random negatives).
    """
    fitted = blend.fitted_on
    return {
        "objective": fitted.get("objective", "pointwise"),
        "C": fitted.get("C_setting", "auto"),
        "structure": fitted.get("structure", "signals"),
        "random_negatives": fitted.get("random_negatives", 0),
    }


def cross_validated_engine(
    ranker,
    pairs: Mapping[str, Mapping[str, int]],
    *,
    random_negatives: int = RANDOM_NEGATIVES,
    candidate_negatives: int = 0,
    **fit_params,
) -> Callable[[str], object]:
    """``query_id -> Ranker`` whose blend was fitted without that query's pairs.

    Queries that :func:`labelled_signals` leaves out (no positive, or no negative) get the blend
    fitted on all pairs, which holds none of theirs.
    """
    data = labelled_signals(ranker, pairs, random_negatives=random_negatives, candidate_negatives=candidate_negatives)
    blends = cross_validate_blend(data, **fit_params)
    everything = fit_blend(data, **fit_params)
    everything.fitted_on["random_negatives"] = random_negatives
    everything.fitted_on["candidate_negatives"] = candidate_negatives
    rankers = {q: ranker.with_blend(b) for q, b in blends.items()}
    default = ranker.with_blend(everything)
    return lambda query_id: rankers.get(query_id, default)
