"""Why a candidate is related to a query: facts present in both trials, and the score parts."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .signals import phase_ordinal
from ..ingest.trial import Phase, Trial
from ..features.kinds import intervention_kinds

__all__ = ["explain"]


def _phase_relation(q: Trial, c: Trial) -> str:
    if not q.phases or not c.phases:
        return "unknown"
    if set(q.phases) == set(c.phases):
        return "same"
    if set(q.phases) & set(c.phases):
        return "overlapping"
    qo, co = phase_ordinal(q), phase_ordinal(c)
    if Phase.NA in q.phases or Phase.NA in c.phases:
        return "different"
    return "earlier" if co < qo else "later"


def _shared(q_values: Sequence[str] | None, c_values: Sequence[str] | None) -> list[str]:
    q_norm = {" ".join(v.lower().split()) for v in q_values or ()}
    out = []
    for v in c_values or ():
        if " ".join(v.lower().split()) in q_norm and v not in out:
            out.append(v)
    return out


def _distinct(values: Sequence[str]) -> list[str]:
    """Values without case/space variants of earlier ones (a MeSH term equal to a condition)."""
    seen, out = set(), []
    for v in values:
        key = " ".join(v.lower().split())
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


_LABELS = {"brief_title": "title"}  # field names as a reader says them


def _similar(field: str, cand: Trial) -> str:
    """"similar <field>", naming the candidate's own terms where the field is a list of them."""
    named = {"conditions": cand.conditions, "interventions": cand.intervention_names}.get(field)
    if named is None and field == "conditions":
        named = cand.condition_mesh
    terms = _distinct([t for t in named or () if t and t.strip()])[:2]
    if terms:
        return f"similar {field}: " + " · ".join(terms)
    return f"similar {_LABELS.get(field, field)}"


def _words(value: str | None) -> str | None:
    """``NON_RANDOMIZED`` -> ``non randomized``; ``None`` and ``NA`` (not applicable) -> ``None``."""
    if not value or value.strip().upper() in ("NA", "N/A"):
        return None
    return " ".join(value.replace("_", " ").replace("-", " ").lower().split())


def _design(query: Trial, cand: Trial, same_phase: bool) -> str:
    """"same design: phase 2, interventional, randomized, treatment" (the design facts both share)."""
    shared = []
    if same_phase and cand.phase:
        shared.append(cand.phase.replace("PHASE", "phase ").lower())
    for q, c in ((query.study_type, cand.study_type), (query.allocation, cand.allocation),
                 (query.primary_purpose, cand.primary_purpose)):
        q, c = (_words(v.value if hasattr(v, "value") else v) for v in (q, c))
        if q and q == c:
            shared.append(c)
    return "same design: " + ", ".join(shared) if shared else "similar design"


def explain(query: Trial, cand: Trial, components: dict[str, float], field_cos, fields,
            aspect: str = "overall") -> dict[str, Any]:
    """Why ``cand`` is related to ``query``: facts present in both, and the score components.

    In an aspect's list (``aspect``: condition, intervention, design) the reason of that aspect
    comes first, and ``why["aspect"]`` names it.
    """
    shared = {
        "conditions": _shared(query.conditions, cand.conditions),
        "condition_mesh": _shared(query.condition_mesh, cand.condition_mesh),
        "interventions": _shared(query.intervention_names, cand.intervention_names),
        "intervention_mesh": _shared(query.intervention_mesh, cand.intervention_mesh),
        "intervention_types": [t.value for t in cand.intervention_types or () if t in (query.intervention_types or ())],
        "intervention_kinds": sorted(intervention_kinds(query.intervention_names) & intervention_kinds(cand.intervention_names)),
    }
    q_status = query.overall_status.value if query.overall_status else None
    c_status = cand.overall_status.value if cand.overall_status else None
    phase = {"query": query.phase, "candidate": cand.phase, "relation": _phase_relation(query, cand)}
    status = {
        "query": q_status,
        "candidate": c_status,
        "relation": "unknown" if not (q_status and c_status) else ("same" if q_status == c_status else "different"),
    }
    reasons = []
    topics = _distinct(shared["conditions"] + shared["condition_mesh"])[:3]
    if topics:
        reasons.append(("Same condition: " if len(topics) == 1 else "Same conditions: ") + " · ".join(topics))
    drugs = _distinct(shared["interventions"] + shared["intervention_mesh"])[:2]
    if drugs:
        reasons.append(("same intervention: " if len(drugs) == 1 else "same interventions: ") + " · ".join(drugs))
    if phase["relation"] == "same":
        reasons.append(f"same phase ({cand.phase})")
    first = {"condition": "conditions", "intervention": "interventions"}.get(aspect)
    if first:  # the aspect's own reason leads: shared terms, or the candidate's similar ones
        leading = [r for r in reasons if r.lower().startswith("same " + first[:-1])]
        if not leading:
            leading = [_similar(first, cand)]
            if first == "interventions" and shared["intervention_kinds"]:  # "... (same kind: cell)"
                leading = [f"{leading[0]} (same kind: {', '.join(shared['intervention_kinds'][:2])})"]
        reasons = leading + [r for r in reasons if r not in leading]
    elif aspect == "design":
        reasons = [_design(query, cand, phase["relation"] == "same")]
    if not reasons:
        best = [f for f, c in zip(fields, field_cos) if not np.isnan(c)]
        best = max(best, key=lambda f: field_cos[list(fields).index(f)]) if best else None
        reasons.append(_similar(best, cand) if best else "similar text")
    return {
        "shared": shared,
        "phase": phase,
        "status": status,
        "fields": {f: (None if np.isnan(c) else round(float(c), 4)) for f, c in zip(fields, field_cos)},
        "components": components,
        "summary": "; ".join(reasons)[:200],
        **({"aspect": aspect} if aspect != "overall" else {}),
    }
