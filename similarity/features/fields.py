"""Which parts of a ``Trial`` are embedded, and which are encoded as structured attributes.

The default model reads only its first 256 tokens, while a trial's texts average ~600 words. So the
text is split into short, focused fields that each fit the window and are embedded one by one
(``brief_title``, ``conditions``, ``interventions``, ``summary``, ``criteria``...) instead of one
long concatenation whose tail would be cut off. ``text`` is that concatenation all the same, as the
model reads it (its first 256 tokens: mostly titles, conditions, interventions and the start of the
summary, in one context): the strongest single signal on labelled queries never used in
development, and one more view in the default fusion. ``benchmarks/quality.md`` compares the two on the
labelled pairs. ``title`` (brief and official titles together) is kept for indexes built with it;
the brief title alone ranks as well at a third of the tokens.
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable, Sequence

import numpy as np

from .. import defaults
from ..ingest.trial import Trial
from .kinds import intervention_kinds

__all__ = [
    "TextField",
    "DEFAULT_TEXT_FIELDS",
    "FAST_TEXT_FIELDS",
    "TERM_FIELDS",
    "STRUCTURED_COLUMNS",
    "MULTI_VALUED_COLUMNS",
    "text_table",
    "concatenated_text",
    "structured_table",
    "attribute_sets",
]


class TextField(str, Enum):
    """A text field embedded on its own."""

    TITLE = "title"
    BRIEF_TITLE = "brief_title"
    CONDITIONS = "conditions"
    INTERVENTIONS = "interventions"
    SUMMARY = "summary"
    DESCRIPTION = "description"
    CRITERIA = "criteria"
    OUTCOMES = "outcomes"
    TEXT = "text"


DEFAULT_TEXT_FIELDS: tuple[TextField, ...] = tuple(TextField(f) for f in defaults.TEXT_FIELDS)
"""The fields of the default index (:data:`similarity.defaults.TEXT_FIELDS`)."""

FAST_TEXT_FIELDS: tuple[TextField, ...] = tuple(TextField(f) for f in defaults.FAST_TEXT_FIELDS)
"""The fields of ``build --fast`` (:data:`similarity.defaults.FAST_TEXT_FIELDS`)."""

TERM_FIELDS: tuple[TextField, ...] = tuple(TextField(f) for f in defaults.TERM_FIELDS)
"""List fields embedded term by term by default (:data:`similarity.defaults.TERM_FIELDS`)."""


def _join(parts: Iterable[str | None], sep: str = "; ") -> str | None:
    seen: dict[str, None] = {}
    for part in parts:
        if part and part.strip():
            seen.setdefault(part.strip(), None)
    return sep.join(seen) if seen else None


def field_text(trial: Trial, field: TextField) -> str | None:
    """The text of one field of ``trial``, ``None`` when the trial has nothing for it."""
    field = TextField(field)
    if field is TextField.TITLE:
        titles = [trial.brief_title]
        if trial.official_title and trial.official_title != trial.brief_title:
            titles.append(trial.official_title)
        return _join(titles, ". ")
    if field is TextField.BRIEF_TITLE:  # a third of the tokens of both titles
        return (trial.brief_title or "").strip() or (trial.official_title or "").strip() or None
    if field is TextField.CONDITIONS:
        return _join([*(trial.conditions or ()), *(trial.keywords or ()), *(trial.condition_mesh or ())])
    if field is TextField.INTERVENTIONS:
        names = [
            f"{i.type.value.replace('_', ' ').lower()}: {i.name}" if i.type else i.name
            for i in trial.interventions or ()
        ]
        return _join([*names, *(trial.intervention_mesh or ())])
    if field is TextField.SUMMARY:
        return trial.brief_summary or None
    if field is TextField.DESCRIPTION:
        return trial.detailed_description or None
    if field is TextField.CRITERIA:
        return trial.eligibility_criteria or None
    if field is TextField.OUTCOMES:
        return _join(trial.primary_outcomes or ())
    if field is TextField.TEXT:  # the model cuts it at its window, like the ``dense`` baseline
        return concatenated_text(trial)
    raise AssertionError(field)  # unreachable: TextField() above rejects other values


def text_table(trials: Sequence[Trial], fields: Sequence[TextField | str]) -> np.ndarray:
    """A ``(n_trials, n_fields)`` object array of field texts (``None`` where missing)."""
    fields = [TextField(f) for f in fields]
    table = np.empty((len(trials), len(fields)), dtype=object)
    for i, trial in enumerate(trials):
        for j, field in enumerate(fields):
            table[i, j] = field_text(trial, field)
    return table


def concatenated_text(trial: Trial) -> str:
    """All of a trial's text in one string: the input of the plain ``dense`` and lexical baselines."""
    return _join(
        [
            field_text(trial, TextField.TITLE),
            field_text(trial, TextField.CONDITIONS),
            field_text(trial, TextField.INTERVENTIONS),
            trial.brief_summary,
            trial.detailed_description,
            trial.eligibility_criteria,
        ],
        "\n",
    ) or trial.nct_id


STRUCTURED_COLUMNS: tuple[str, ...] = (
    "status",
    "phase",
    "study_type",
    "intervention_types",
    "primary_purpose",
    "allocation",
    "sponsor_class",
    "condition_mesh",
    "intervention_mesh",
    "conditions",
    "intervention_names",
    "intervention_kinds",
)
"""The structured attributes, in the column order of :func:`structured_table`."""

MULTI_VALUED_COLUMNS: tuple[str, ...] = (
    "phase",
    "intervention_types",
    "condition_mesh",
    "intervention_mesh",
    "conditions",
    "intervention_names",
    "intervention_kinds",
)

_SEP = "|"


def _norm_term(term: str) -> str:
    return " ".join(term.lower().replace(_SEP, " ").split())


def attribute_sets(trial: Trial) -> dict[str, frozenset[str]]:
    """Each structured attribute of ``trial`` as a set of normalised values (empty when unknown)."""

    def norm(values: Iterable[str | None] | None) -> frozenset[str]:
        return frozenset(_norm_term(v) for v in values or () if v and v.strip())

    enum_value = lambda e: [e.value] if e is not None else []  # noqa: E731
    return {
        "status": norm(enum_value(trial.overall_status)),
        "phase": norm(p.value for p in trial.phases or ()),
        "study_type": norm(enum_value(trial.study_type)),
        "intervention_types": norm(t.value for t in trial.intervention_types or ()),
        "primary_purpose": norm([trial.primary_purpose]),
        "allocation": norm([trial.allocation]),
        "sponsor_class": norm([trial.sponsor_class]),
        "condition_mesh": norm(trial.condition_mesh),
        "intervention_mesh": norm(trial.intervention_mesh),
        "conditions": norm(trial.conditions),
        "intervention_names": norm(trial.intervention_names),
        "intervention_kinds": intervention_kinds(trial.intervention_names),
    }


def structured_table(trials: Sequence[Trial], columns: Sequence[str] = STRUCTURED_COLUMNS) -> np.ndarray:
    """A ``(n_trials, len(columns))`` array of strings for :class:`StructuredFeaturizer`.

    Multi-valued cells are ``|``-joined; a missing value is the empty string. ``columns``: those
    of :data:`STRUCTURED_COLUMNS` an index encodes (an index built before a column was added
    encodes fewer).
    """
    table = np.empty((len(trials), len(columns)), dtype=object)
    for i, trial in enumerate(trials):
        sets = attribute_sets(trial)
        for j, column in enumerate(columns):
            table[i, j] = _SEP.join(sorted(sets[column]))
    return table
