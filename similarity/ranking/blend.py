"""How signals become one score: z-score fusion (the shipped default), a fixed weighted sum, a learned
linear blend, rank fusion, or a two-stage cascade of blends.

Every blend returns one component per group (``semantic``, ``structured``, ``lexical``); the
score shown is their sum, so the components in ``why`` always add up to it. ``blend.rank(signals)``
gives the components and the order of the candidates (best first): the order of the scores,
except for a cascade.

- :class:`FusionBlend` (``fusion``, the shipped default): each chosen signal is z-normalised over
  the candidate list being ranked (mean 0, standard deviation 1; an unavailable value counts as the
  list's mean), and the score is their weighted mean. With equal weights it has no parameter that
  labels could fit: chosen under nested cross-validation over the learned blends below
  (``benchmarks/quality.md``).
- :class:`BlendWeights` (``wsum``): each group's value is the weighted mean of its *available*
  signals (a field one trial lacks neither helps nor hurts), then
  ``score = semantic_w * semantic + structured_w * structured + lexical_w * lexical``.
- :class:`LearnedBlend` (``learned``): a logistic regression fitted on labelled pairs
  (``related-trials fit-weights``); unavailable signals are imputed with the mean of the available
  ones of their group, then ``score = sum_i coef_i * signal_i`` (the intercept does not change a
  ranking and is left out).
- :class:`RRFBlend` (``rrf``): reciprocal-rank fusion of the three group values over the
  candidate list, ``sum_g 1 / (k + rank_g)``: no weights to fit, the documented simple alternative.
- :class:`CascadeBlend` (``cascade``, the previous default): retrieve, then rerank. The
  ``retrieve`` blend orders all candidates; the ``rerank`` blend re-orders the first ``depth`` of
  them (by default the ten a related list shows). Each trial's score and components are those of
  the blend that placed it, so within the first ``depth`` places and after them scores decrease,
  and a trial after place ``depth`` can show a higher score than one above it (a different blend).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Union

import numpy as np

from .. import defaults
from ..exceptions import InvalidParameter
from .signals import GROUPS, Signals, signal_group

__all__ = ["FusionBlend", "BlendWeights", "LearnedBlend", "RRFBlend", "CascadeBlend", "Blend", "blend_from_dict", "default_blend", "impute", "register_blend"]

DEFAULT_BLEND_FILE = "default_blend.json"
"""The blend shipped with the package (``related-trials fit-weights --export``), in
``similarity/ranking/``: the design that nested cross-validation on trialsim-dev chose."""


def _pairs(values) -> tuple[tuple[str, float], ...]:
    return tuple((str(k), float(v)) for k, v in dict(values).items())


def _group_means(signals: Signals, inner: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Per group, the weighted mean of available signals (0 where none is available)."""
    out = {}
    for group in GROUPS:
        cols = [j for j, g in enumerate(signals.groups) if g == group]
        w = np.array([inner.get(signals.names[j], 1.0) for j in cols], dtype=np.float64)
        v = signals.values[:, cols]
        avail = ~np.isnan(v) & (w > 0)[None]
        den = (avail * w[None]).sum(1)
        num = np.where(avail, np.nan_to_num(v) * w[None], 0.0).sum(1)
        out[group] = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
    return out


def impute(signals: Signals) -> np.ndarray:
    """Signal values with NaN replaced by the mean of the row's available signals of its group."""
    means = _group_means(signals, {})
    values = signals.values.copy()
    for j, group in enumerate(signals.groups):
        missing = np.isnan(values[:, j])
        values[missing, j] = means[group][missing]
    return values


class _ScoreOrder:
    """``rank``: the components, and the candidates ordered by their sum (ties keep their order)."""

    def rank(self, signals: Signals) -> tuple[dict[str, np.ndarray], np.ndarray]:
        components = self.combine(signals)
        return components, np.argsort(-sum(components.values()), kind="stable")


@dataclasses.dataclass(frozen=True)
class BlendWeights(_ScoreOrder):
    """Fixed weighted sum. ``fields`` and ``attributes`` weigh signals inside their group."""

    semantic: float = 0.7
    structured: float = 0.1
    lexical: float = 0.2
    fields: tuple[tuple[str, float], ...] = tuple(defaults.FIELD_WEIGHTS.items())
    attributes: tuple[tuple[str, float], ...] = (
        ("condition_mesh", 2.0),
        ("conditions", 1.0),
        ("intervention_mesh", 1.0),
        ("intervention_names", 1.0),
        ("intervention_types", 0.5),
        ("phase", 0.5),
        ("study_type", 0.5),
        ("primary_purpose", 0.5),
        ("allocation", 0.1),
        ("status", 0.1),
        ("sponsor_class", 0.1),
    )
    method = "wsum"

    def __post_init__(self):
        object.__setattr__(self, "fields", _pairs(self.fields))
        object.__setattr__(self, "attributes", _pairs(self.attributes))
        if min(self.semantic, self.structured, self.lexical) < 0:
            raise InvalidParameter(f"blend weights must be >= 0, got {self}")

    def inner_weights(self) -> dict[str, float]:
        """Each signal's weight inside its group (``field:<name>`` and ``attr:<name>`` keys)."""
        inner = {f"field:{k}": v for k, v in self.fields}
        inner.update({f"attr:{k}": v for k, v in self.attributes})
        return inner

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        means = _group_means(signals, self.inner_weights())
        return {g: getattr(self, g) * means[g] for g in GROUPS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "semantic": self.semantic,
            "structured": self.structured,
            "lexical": self.lexical,
            "fields": dict(self.fields),
            "attributes": dict(self.attributes),
        }


@dataclasses.dataclass(frozen=True)
class LearnedBlend(_ScoreOrder):
    """Linear blend with one fitted coefficient per signal (missing signals weigh 0)."""

    coef: tuple[tuple[str, float], ...]
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    method = "learned"

    def __post_init__(self):
        object.__setattr__(self, "coef", _pairs(self.coef))

    def decision(self, names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        """Scores of already imputed signal ``values`` (columns named ``names``)."""
        coef = dict(self.coef)
        return values @ np.array([coef.get(n, 0.0) for n in names])

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        coef = dict(self.coef)
        values = impute(signals)
        w = np.array([coef.get(n, 0.0) for n in signals.names])
        return {
            g: (values * np.where(np.array(signals.groups) == g, w, 0.0)[None]).sum(1) for g in GROUPS
        }

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "coef": dict(self.coef), "fitted_on": dict(self.fitted_on)}


@dataclasses.dataclass(frozen=True)
class RRFBlend(_ScoreOrder):
    """Reciprocal-rank fusion of the group values (equal-weight group means) over the candidates."""

    k: float = 60.0
    method = "rrf"

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        means = _group_means(signals, {})
        out = {}
        for g in GROUPS:
            order = np.argsort(-means[g], kind="stable")
            ranks = np.empty(len(order))
            ranks[order] = np.arange(1, len(order) + 1)
            out[g] = 1.0 / (self.k + ranks)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "k": self.k}


FUSION_SIGNALS = defaults.FUSION_SIGNALS


@dataclasses.dataclass(frozen=True)
class FusionBlend(_ScoreOrder):
    """Weighted mean of z-normalised signals over the candidate list (no fitted parameter).

    Each signal's scale differs (cosines of short titles spread wider than those of summaries;
    BM25 ratios are mostly near 0), so each is centred and scaled over the candidates it ranks:
    a signal counts by how far it sets a candidate apart from the others. A signal unavailable for
    a candidate (a field one trial lacks) counts as the list's mean; a constant signal counts 0.
    ``weights`` names signals (or kinds, ``field:``) and their weights; the others are unused.
    """

    weights: tuple[tuple[str, float], ...] = FUSION_SIGNALS
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    method = "fusion"

    def __post_init__(self):
        object.__setattr__(self, "weights", _pairs(self.weights))
        if not self.weights or any(w < 0 for _, w in self.weights) or not sum(w for _, w in self.weights):
            raise InvalidParameter(f"fusion weights must be >= 0 and not all 0, got {dict(self.weights)}")

    def weight_of(self, name: str) -> float:
        """The weight of signal ``name``: its own entry, else its kind's (``field:``), else 0."""
        weights = dict(self.weights)
        if name in weights:
            return weights[name]
        kind = name.partition(":")[0] + ":"
        return weights.get(kind, 0.0) if ":" in name else 0.0

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        w = np.array([self.weight_of(n) for n in signals.names])
        z = np.zeros(signals.values.shape)
        for j in np.flatnonzero(w > 0):
            v = signals.values[:, j]
            avail = ~np.isnan(v)
            if avail.sum() < 2:
                continue
            sd = v[avail].std()
            if sd > 1e-12:
                z[avail, j] = (v[avail] - v[avail].mean()) / sd
        total = w.sum() or 1.0
        groups = np.array(signals.groups)
        return {g: (z * np.where(groups == g, w, 0.0)[None]).sum(1) / total for g in GROUPS}

    def decision(self, names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        """Scores of one query's candidates ``values`` (columns named ``names``)."""
        signals = Signals(np.arange(len(values)), tuple(names), tuple(signal_group(n) for n in names), values)
        return sum(self.combine(signals).values())

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weights": dict(self.weights), "fitted_on": dict(self.fitted_on)}


RERANK_DEPTH = 10
"""Places a :class:`CascadeBlend` re-orders by default: the related list's usual length, and the
number of candidates each labelled query of trialsim-dev has (the lists the rerank blend is fitted
to order)."""


@dataclasses.dataclass(frozen=True)
class CascadeBlend:
    """Two stages: ``retrieve`` orders the candidates, ``rerank`` re-orders its first ``depth``.

    A blend fitted on labelled candidates (hard negatives of one topic) learns what separates
    related trials *among trials on the query's topic*: shared intervention names, phase, design.
    Over the whole index those same signals match hundreds of trials of one disease, so the
    rerank blend only sees the trials the retrieve blend put first (``fit_blend(structure=
    "cascade")`` fits both).
    """

    retrieve: "Blend"
    rerank: "Blend"
    depth: int = RERANK_DEPTH
    fitted_on: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    method = "cascade"

    def __post_init__(self):
        if not isinstance(self.depth, int) or self.depth < 1:
            raise InvalidParameter(f"cascade depth must be an integer >= 1, got {self.depth!r}")
        for stage in (self.retrieve, self.rerank):
            if isinstance(stage, CascadeBlend):
                raise InvalidParameter("a cascade's stages must be single blends, not cascades")

    def _join(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The retrieve order ``first`` with its head re-ordered by ``second`` (positions into the head)."""
        return np.concatenate([first[: self.depth][second], first[self.depth:]])

    def rank(self, signals: Signals) -> tuple[dict[str, np.ndarray], np.ndarray]:
        components, first = self.retrieve.rank(signals)
        head = first[: self.depth]
        parts, second = self.rerank.rank(signals.take(head))
        for g in GROUPS:
            components[g] = components[g].copy()
            components[g][head] = parts[g]
        return components, self._join(first, second)

    def combine(self, signals: Signals) -> dict[str, np.ndarray]:
        return self.rank(signals)[0]

    def decision(self, names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        """An ordering key of already imputed signal ``values`` (higher first), not a score."""
        first = np.argsort(-self.retrieve.decision(names, values), kind="stable")
        second = np.argsort(-self.rerank.decision(names, values[first[: self.depth]]), kind="stable")
        order = self._join(first, second)
        key = np.empty(len(order))
        key[order] = np.arange(len(order), 0, -1)
        return key

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "depth": self.depth,
            "retrieve": self.retrieve.to_dict(),
            "rerank": self.rerank.to_dict(),
            "fitted_on": dict(self.fitted_on),
        }


Blend = Union[FusionBlend, BlendWeights, LearnedBlend, RRFBlend, CascadeBlend]


def blend_from_dict(data: Mapping[str, Any]) -> Blend:
    """Rebuild a blend saved by ``to_dict`` (in an index manifest)."""
    data = dict(data)
    method = data.pop("method", "wsum")
    try:
        if method == "wsum":
            return BlendWeights(**data)
        if method == "learned":
            return LearnedBlend(coef=data["coef"], fitted_on=data.get("fitted_on", {}))
        if method == "rrf":
            return RRFBlend(**data)
        if method == "fusion":
            return FusionBlend(weights=data.get("weights", FUSION_SIGNALS), fitted_on=data.get("fitted_on", {}))
        if method == "cascade":
            return CascadeBlend(
                retrieve=blend_from_dict(data["retrieve"]),
                rerank=blend_from_dict(data["rerank"]),
                depth=data.get("depth", RERANK_DEPTH),
                fitted_on=data.get("fitted_on", {}),
            )
        if method in _READERS:
            return _READERS[method](data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidParameter(f"malformed {method!r} blend: {exc!r}") from None
    allowed = ", ".join(["fusion", "wsum", "learned", "rrf", "cascade", *_READERS])
    raise InvalidParameter(f"unknown blend method {method!r}; allowed: {allowed}")


_READERS: dict[str, Any] = {}


def register_blend(method: str, read) -> None:
    """Let :func:`blend_from_dict` rebuild blends saved with ``method`` by ``read(data)`` (a blend
    defined in a module that itself builds on this one: :mod:`.coverage`)."""
    _READERS[method] = read


def default_blend(signal_names: tuple[str, ...]) -> Blend:
    """The blend a new index gets: the shipped blend when it covers the index's signals.

    A fusion covers any index that has one of its signals (``field:`` names every field). A learned
    blend covers an index when every embedded field has a coefficient (an attribute that no trial
    of the corpus has is simply absent). Otherwise: :class:`FusionBlend` with its default signals.
    """
    import json
    from importlib import resources

    try:
        data = json.loads(resources.files(__package__).joinpath(DEFAULT_BLEND_FILE).read_text())
        blend = blend_from_dict(data)
    except (OSError, ValueError, KeyError, InvalidParameter):
        return FusionBlend()
    if getattr(blend, "method", None) == "covering":  # the shipped blend with aspect coverage
        base = _covered_default(blend.base, signal_names)
        return dataclasses.replace(blend, base=base) if base is blend.base else base
    return _covered_default(blend, signal_names)


def _covered_default(blend: Blend, signal_names: tuple[str, ...]) -> Blend:
    """``blend`` where it covers the index's signals, else :class:`FusionBlend`."""
    if isinstance(blend, FusionBlend):
        return blend if any(blend.weight_of(n) > 0 for n in signal_names) else FusionBlend()
    stages = (blend.retrieve, blend.rerank) if isinstance(blend, CascadeBlend) else (blend,)
    fields = {n for n in signal_names if n.startswith("field:")}
    if all(isinstance(b, LearnedBlend) and fields <= set(dict(b.coef)) for b in stages):
        return blend
    return FusionBlend()
