"""``fit-weights`` as a function: settings in, a blend and a report out (the CLI only prints it).

:func:`fit_weights` either runs the design selection of :mod:`.selection` on every labelled query
(``structure="select"``, the default, or ``"fusion"`` alone) or fits one learned structure of
:mod:`.tuning` and measures it against fixed weights by cross-validation by query.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from ..exceptions import InvalidParameter
from .blend import Blend, BlendWeights, CascadeBlend
from .coverage import CoveringBlend
from .ranker import Ranker
from .selection import COVERAGE_WEIGHTS, DEFAULT_DESIGNS, DESIGNS, query_signals, select_design
from .tuning import RANDOM_NEGATIVES, cross_validate_blend, fit_blend, labelled_signals, rerank_ndcg

__all__ = ["FitSettings", "FitReport", "fit_weights", "FIT_STRUCTURES"]

FIT_STRUCTURES: tuple[str, ...] = ("select", "fusion", "cascade", "groups", "signals")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How ``fit-weights`` fits.

    Args:
        structure: ``select`` (choose among the designs by cross-validation by query, fit the
            winner on all queries), ``fusion`` (the z-score fusion, nothing fitted), or a learned
            structure: ``cascade``, ``groups`` (one weight per signal group), ``signals`` (one per signal).
        objective: ``pointwise`` or ``pairwise`` logistic regression (learned structures).
        C: L2 strength of the logistic regression, or ``"auto"`` (chosen by inner cross-validation).
        random_negatives: random index trials added per query as unrelated (0: labelled pairs only).
        coverage: the aspect-coverage weights the selection chooses among (``select`` and
            ``fusion``; one weight: that one), see :func:`~similarity.ranking.selection.choose_coverage`.
    """

    structure: str = "select"
    objective: str = "pointwise"
    C: float | str = "auto"
    random_negatives: int = RANDOM_NEGATIVES
    coverage: tuple[float, ...] = COVERAGE_WEIGHTS

    def __post_init__(self):
        if self.structure not in FIT_STRUCTURES:
            raise InvalidParameter(f"unknown structure {self.structure!r}; allowed: {', '.join(FIT_STRUCTURES)}")
        if self.objective not in ("pointwise", "pairwise"):
            raise InvalidParameter(f"objective must be pointwise or pairwise, got {self.objective!r}")
        if self.C != "auto":
            try:
                C = float(self.C)
            except (TypeError, ValueError):
                C = -1.0
            if not C > 0:
                raise InvalidParameter(f"C must be a positive number or 'auto', got {self.C!r}")
            object.__setattr__(self, "C", C)
        if self.random_negatives < 0:
            raise InvalidParameter(f"random_negatives must be >= 0, got {self.random_negatives}")


@dataclasses.dataclass
class FitReport:
    """What :func:`fit_weights` fitted and how it scored.

    Attributes:
        blend: the fitted blend (save it in the index manifest to serve it).
        settings: the settings it was fitted with.
        queries: labelled queries used.
        design_scores: (selection) each design's inner cross-validated score.
        standard_error: (selection) the standard error of the best design's score.
        ndcg_fixed: (learned) rerank nDCG@5 of fixed weights on the labelled pairs.
        ndcg_cross_validated: (learned) rerank nDCG@5 of the blend cross-validated by query.
    """

    blend: Blend
    settings: FitSettings
    queries: int
    design_scores: dict[str, float] = dataclasses.field(default_factory=dict)
    standard_error: float | None = None
    ndcg_fixed: float | None = None
    ndcg_cross_validated: float | None = None

    def lines(self) -> list[str]:
        """The report as a reader reads it."""
        out: list[str] = []
        fitted = self.blend.fitted_on
        if self.design_scores:
            out.append(f"designs scored by 4-fold cross-validation over {self.queries} queries "
                       "(mean of rerank nDCG@5 and retrieve R@10):")
            for name, value in sorted(self.design_scores.items(), key=lambda x: -x[1]):
                out.append(f"  {name:24s} {value:.4f}  ({DESIGNS[name].parameters} fitted parameters)")
            out.append(f"chosen: {fitted['design']} (the simplest within one standard error, "
                       f"{self.standard_error:.4f}, of the best)")
        if self.ndcg_fixed is not None:
            C = fitted["C"]
            C_text = ", ".join(f"{k} C={v:g}" for k, v in C.items()) if isinstance(C, dict) else f"C={C:g}"
            out.append(f"fitted on {fitted['pairs']} pairs of {fitted['queries']} queries "
                       f"({self.settings.objective}, {self.settings.structure}, {C_text})")
            out.append(f"rerank nDCG@5 on the labelled pairs: fixed weights (nothing fitted) "
                       f"{self.ndcg_fixed:.4f}, learned blend cross-validated by query "
                       f"{self.ndcg_cross_validated:.4f}")
        blend = self.blend.base if isinstance(self.blend, CoveringBlend) else self.blend
        weights = getattr(blend, "weights", None)
        if weights is not None:
            out.append("fusion weights: " + ", ".join(f"{k} {v:g}" for k, v in weights))
        if isinstance(blend, CascadeBlend):
            stages = {"retrieve": blend.retrieve, f"rerank (first {blend.depth})": blend.rerank}
        else:
            stages = {"": blend} if hasattr(blend, "coef") else {}
        for stage, stage_blend in stages.items():
            if stage:
                out.append(f"{stage}:")
            out.extend(f"  {name:28s} {weight:.4f}" for name, weight in sorted(stage_blend.coef, key=lambda x: -x[1]) if weight)
        if isinstance(self.blend, CoveringBlend):
            scores = self.blend.fitted_on.get("coverage_scores", {})
            chosen = (f"chosen on the same queries ({', '.join(f'{w}: {v:.4f}' for w, v in scores.items())})"
                      if scores else "as given")
            out.append(f"aspect coverage of the first {self.blend.head} places ({', '.join(self.blend.aspects)}): "
                       f"weight {self.blend.weight:g}, {chosen}")
        elif self.settings.structure in ("select", "fusion"):
            out.append("aspect coverage: none (weight 0: no weight among "
                       f"{', '.join(f'{w:g}' for w in self.settings.coverage)} scored clearly better on these queries)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "blend": self.blend.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "queries": self.queries,
            "design_scores": dict(self.design_scores),
            "standard_error": self.standard_error,
            "ndcg_fixed": self.ndcg_fixed,
            "ndcg_cross_validated": self.ndcg_cross_validated,
        }


def fit_weights(index, pairs: Mapping[str, Mapping[str, int]], settings: FitSettings = FitSettings()) -> FitReport:
    """Fit the blend of ``index`` on labelled ``pairs`` (``{query: {candidate: label}}``)."""
    ranker = Ranker(index, BlendWeights())
    if settings.structure in ("select", "fusion"):
        return _select(ranker, pairs, settings)
    return _learned(ranker, pairs, settings)


def _select(ranker: Ranker, pairs, settings: FitSettings) -> FitReport:
    queries = query_signals(ranker, pairs, random_negatives=settings.random_negatives)
    designs = DEFAULT_DESIGNS if settings.structure == "select" else ("fusion",)
    selection = select_design(queries, designs, coverage=settings.coverage)
    blend = selection.blend
    blend.fitted_on.update({"design": selection.design, "queries": len(queries),
                            "inner_scores": {k: round(v, 4) for k, v in selection.scores.items()}})
    return FitReport(blend, settings, len(queries), dict(selection.scores),
                     selection.standard_error if selection.scores else None)


def _learned(ranker: Ranker, pairs, settings: FitSettings) -> FitReport:
    data = labelled_signals(ranker, pairs, random_negatives=settings.random_negatives)
    fit = dict(objective=settings.objective, structure=settings.structure, C=settings.C)
    blend = fit_blend(data, **fit)
    blend.fitted_on["random_negatives"] = settings.random_negatives
    labelled = np.array([c in pairs[q] for q, c in zip(data.queries, data.candidates)])
    only = data.subset(labelled)  # rerank mode: each query's labelled candidates, ordered by the blend
    fixed = np.zeros(len(only.y))
    learned = np.zeros(len(only.y))
    for q, fold_blend in cross_validate_blend(data, **fit).items():
        rows = only.queries == q
        learned[rows] = fold_blend.decision(only.names, only.X[rows])
        cands = np.array([ranker.index.row(c) for c in only.candidates[rows]])
        fixed[rows] = ranker.score(ranker.features(q), cands)[2]
    blend.fitted_on["C_setting"] = settings.C
    return FitReport(blend, settings, len(set(data.queries)),
                     ndcg_fixed=rerank_ndcg(only, fixed), ndcg_cross_validated=rerank_ndcg(only, learned))
