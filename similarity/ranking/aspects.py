"""Related by what? Aspect lists: trials related by condition, by intervention, or by design.

The default (``overall``) list blends every view of two trials. A registry also relates trials by
one kind of fact — the seed page lists cell-therapy trials in other diseases beside the seed's
stem-cell trial in systemic sclerosis — so each aspect ranks with the signals of its kind only:

- ``condition``: the conditions field (conditions, keywords and condition MeSH terms, embedded),
  the overlap of condition names and of condition MeSH terms;
- ``intervention``: the interventions field (intervention names and MeSH terms, embedded), the
  overlap of intervention names, of intervention MeSH terms, of intervention types and of the
  interventions' kinds (the head noun of each name: "cells", "vaccine", "antibody";
  :mod:`similarity.features.kinds`), so a cell therapy meets cell therapies in other diseases;
- ``design``: the overlap of phase, study type, allocation and primary purpose, among trials of
  the same topic (the overall candidates), with the whole-text cosine at half weight to order
  trials whose designs tie.

Each aspect is a :class:`~similarity.ranking.blend.FusionBlend` of its signals with equal weights:
the labelled pairs judge overall relatedness, not relatedness by one aspect, so there are no labels
to fit or choose these weights on, and equal z-scored weights are the choice that assumes least.
For ``condition`` and ``intervention`` the candidates are the overall candidates and the trials
nearest the query's own condition or intervention field, so a trial of another disease with the
same kind of intervention can be a candidate.
"""

from __future__ import annotations

from enum import Enum

from ..exceptions import InvalidParameter
from .blend import FusionBlend

__all__ = ["Aspect", "ASPECT_SIGNALS", "aspect_blend", "ASPECT_FIELDS"]


class Aspect(str, Enum):
    """What a related list relates trials by."""

    OVERALL = "overall"
    CONDITION = "condition"
    INTERVENTION = "intervention"
    DESIGN = "design"

    @classmethod
    def parse(cls, value: "str | Aspect | None") -> "Aspect":
        if value is None:
            return cls.OVERALL
        try:
            return cls(str(value.value if isinstance(value, Aspect) else value).strip().lower())
        except ValueError:
            raise InvalidParameter(
                f"aspect must be one of {', '.join(a.value for a in cls)}, got {value!r}"
            ) from None


ASPECT_SIGNALS: dict[Aspect, dict[str, float]] = {
    Aspect.CONDITION: {"field:conditions": 1.0, "attr:conditions": 1.0, "attr:condition_mesh": 1.0},
    Aspect.INTERVENTION: {"field:interventions": 1.0, "attr:intervention_names": 1.0,
                          "attr:intervention_mesh": 1.0, "attr:intervention_types": 1.0,
                          "attr:intervention_kinds": 1.0},
    Aspect.DESIGN: {"attr:phase": 1.0, "attr:study_type": 1.0, "attr:allocation": 1.0,
                    "attr:primary_purpose": 1.0, "field:text": 0.5},
}
"""The signals each aspect ranks with, and their weights in its z-score fusion."""

ASPECT_FIELDS: dict[Aspect, str] = {Aspect.CONDITION: "conditions", Aspect.INTERVENTION: "interventions"}
"""The text field whose nearest trials join an aspect's candidates."""


def aspect_blend(aspect: Aspect, signal_names: tuple[str, ...]) -> FusionBlend:
    """The fusion of ``aspect``'s signals that the index has (``signal_names``).

    Raises InvalidParameter where the index has none of them (an index built without the field).
    """
    weights = {name: w for name, w in ASPECT_SIGNALS[aspect].items() if name in signal_names}
    if not weights:
        raise InvalidParameter(f"this index has none of the signals of the {aspect.value} aspect "
                               f"({', '.join(ASPECT_SIGNALS[aspect])}); rebuild it with their fields")
    return FusionBlend(tuple(weights.items()))
