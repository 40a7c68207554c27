"""Ranking: an index's candidates re-scored into the related list a trial page shows.

:mod:`.signals` computes the similarity signals of each candidate (field cosines, attribute
overlaps, BM25); a blend (:mod:`.blend`; by default the z-score fusion) combines them; the
:class:`Ranker` fetches candidates, applies :class:`Filters`, orders, spaces out near-duplicates
(:mod:`.diversity`) and says why (:mod:`.explain`). :mod:`.selection` chooses a blend's design
from labelled queries and :mod:`.fitting` is ``fit-weights`` (learned blends in :mod:`.tuning`).
"""

from .blend import Blend, BlendWeights, CascadeBlend, FusionBlend, LearnedBlend, RRFBlend, blend_from_dict, default_blend
from .diversity import Diversity
from .filters import Filters
from .ranker import Ranker, RelatedTrial
from .signals import QueryFeatures, SignalComputer, Signals
from .fitting import FitReport, FitSettings, fit_weights

__all__ = [
    "Blend",
    "BlendWeights",
    "CascadeBlend",
    "Diversity",
    "Filters",
    "FitReport",
    "FitSettings",
    "FusionBlend",
    "LearnedBlend",
    "QueryFeatures",
    "RRFBlend",
    "Ranker",
    "RelatedTrial",
    "SignalComputer",
    "Signals",
    "blend_from_dict",
    "default_blend",
    "fit_weights",
]
