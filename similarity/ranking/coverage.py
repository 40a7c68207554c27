"""An overall list that covers the aspects: xQuAD over the condition and intervention lists.

The overall blend orders a trial's candidates by every view at once, so a trial that shares the
query's kind of intervention in another disease sits below the trials of the query's disease. Where
a trial has strong neighbours of both kinds, :class:`CoveringBlend` lets the first places of the
overall list show both: it re-orders the head of its base blend's order by xQuAD (Santos et al.,
2010), picking one candidate at a time by

    (1 - weight) * P(d | query) + weight * sum_a P(a) * P(d | a) * prod_{s picked} (1 - P(s | a))

over the aspects ``a`` (condition and intervention, equally likely), where ``P(d | query)`` is the
base blend's score and ``P(d | a)`` the aspect list's (:mod:`.aspects`), each scaled to ``[0, 1]``
over the candidates. An aspect that a picked trial already covers counts less for the next pick,
so the list turns to the other aspect's strong trials; where one aspect's list has no strong trial
the base order stands. Only the head (``head`` places) is re-ordered; the rest keeps the base
order. A trial placed ahead of one the base blend ranks higher records the aspect that brought it,
which its ``why`` names.

``weight`` is chosen with the blend, inside the cross-validation folds
(:func:`~similarity.ranking.selection.choose_coverage`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from ..exceptions import InvalidParameter
from .aspects import ASPECT_SIGNALS, Aspect, aspect_blend
from .blend import RERANK_DEPTH, CascadeBlend, blend_from_dict, register_blend
from .signals import Signals

__all__ = ["CoveringBlend", "COVERED_ASPECTS"]

COVERED_ASPECTS: tuple[str, ...] = (Aspect.CONDITION.value, Aspect.INTERVENTION.value)
"""The aspects the overall list covers: the two that relate trials by topic (design alone does not)."""


def _unit(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to ``[0, 1]`` (all equal: all ones; an unavailable value counts as the lowest)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).all():
        return np.ones_like(values)
    values = np.where(np.isnan(values), np.nanmin(values), values)
    low, high = float(values.min()), float(values.max())
    return np.ones_like(values) if high - low < 1e-12 else (values - low) / (high - low)


@dataclasses.dataclass(frozen=True)
class CoveringBlend:
    """A blend whose first ``head`` places cover the aspects (xQuAD with ``weight``).

    ``weight`` 0 is the base blend itself.
    """

    base: Any
    weight: float = 0.5
    aspects: tuple[str, ...] = COVERED_ASPECTS
    head: int = RERANK_DEPTH
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    method = "covering"

    def __post_init__(self):
        if not 0.0 <= float(self.weight) <= 1.0:
            raise InvalidParameter(f"coverage weight must be in [0, 1], got {self.weight!r}")
        if not isinstance(self.head, int) or self.head < 1:
            raise InvalidParameter(f"coverage head must be an integer >= 1, got {self.head!r}")
        if isinstance(self.base, CoveringBlend):
            raise InvalidParameter("a covering blend's base must not itself be a covering blend")
        unknown = [a for a in self.aspects if a not in COVERED_ASPECTS]
        if unknown or not self.aspects:
            raise InvalidParameter(f"covered aspects must be among {COVERED_ASPECTS}, got {self.aspects!r}")
        object.__setattr__(self, "aspects", tuple(self.aspects))

    def _aspect_scores(self, signals: Signals) -> dict[str, np.ndarray]:
        """Each covered aspect's fusion score of the candidates (aspects the index lacks are left out)."""
        out = {}
        for name in self.aspects:
            aspect = Aspect(name)
            if any(s in signals.names for s in ASPECT_SIGNALS[aspect]):
                out[name] = sum(aspect_blend(aspect, signals.names).combine(signals).values())
        return out

    def cover(self, signals: Signals) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, str]]:
        """The base components, the covering order (positions, best first) and, for each position
        placed ahead of a trial the base blend ranks higher, the aspect that brought it."""
        components, order = self.base.rank(signals)
        n = len(order)
        if self.weight == 0 or n < 2:
            return components, order, {}
        aspects = self._aspect_scores(signals)
        if not aspects:
            return components, order, {}
        base_rank = np.empty(n, dtype=np.int64)
        base_rank[order] = np.arange(n)
        # A cascade's order is not its scores' order: its relevance is the rank it gives.
        relevance = (1.0 - base_rank / max(n - 1, 1) if isinstance(self.base, CascadeBlend)
                     else _unit(sum(components[g] for g in components)))
        names = list(aspects)
        p_aspect = np.stack([_unit(aspects[a]) for a in names])  # (A, n)
        uncovered = np.ones(len(names))
        share = np.full(len(names), 1.0 / len(names))
        free = np.ones(n, dtype=bool)
        picked, brought = [], {}
        for _ in range(min(self.head, n)):
            gains = share[:, None] * p_aspect * uncovered[:, None]
            value = (1.0 - self.weight) * relevance + self.weight * gains.sum(0)
            value = np.where(free, value, -np.inf)
            # ties keep the base order
            best = int(np.flatnonzero(value == value.max())[np.argmin(base_rank[value == value.max()])])
            if best != order[free[order]][0]:  # ahead of a trial the base blend put first
                brought[best] = names[int(np.argmax(gains[:, best]))]
            picked.append(best)
            free[best] = False
            uncovered *= 1.0 - p_aspect[:, best]
        rest = order[free[order]]
        return components, np.concatenate([np.array(picked, dtype=np.int64), rest]), brought

    def rank(self, signals: Signals) -> tuple[dict[str, np.ndarray], np.ndarray]:
        components, order, _ = self.cover(signals)
        return components, order

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        return self.base.combine(signals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "weight": float(self.weight),
            "aspects": list(self.aspects),
            "head": self.head,
            "base": self.base.to_dict(),
            "fitted_on": dict(self.fitted_on),
        }


def _read(data: Mapping[str, Any]) -> CoveringBlend:
    return CoveringBlend(
        base=blend_from_dict(data["base"]),
        weight=float(data["weight"]),
        aspects=tuple(data.get("aspects", COVERED_ASPECTS)),
        head=data.get("head", RERANK_DEPTH),
        fitted_on=data.get("fitted_on", {}),
    )


register_blend(CoveringBlend.method, _read)
