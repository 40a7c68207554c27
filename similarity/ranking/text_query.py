"""Free-text queries: a sentence or a draft protocol read as a trial document the ranker can score.

A text has no NCT ID, no structured record. :func:`text_query` makes one from it:

- the text fills the fields a text can fill (the brief title and, read as one, the concatenated
  ``text`` field; the summary too where the design says so), so the semantic and lexical signals
  compare it with every indexed trial as they compare two trials;
- phrases of the text that the index records as a condition, a condition MeSH term, an
  intervention name or an intervention MeSH term (:class:`Vocabulary`, read from the index's own
  structured encoder: what the indexed trials name, no hand-kept list) become the query's
  conditions and interventions, so the attribute overlaps and the ``why`` of each item work as for
  a trial ("Same condition: multiple sclerosis");
- a phase the text names (``phase 2``, ``Phase II``, ``phase 1/2``) becomes the query's phase.

Phrases match on lowercase word tokens, longest first and without overlap; a phrase made only of
stop words or of words every trial uses ("study", "treatment", "placebo") is not a vocabulary term.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Iterable, Mapping

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .. import defaults
from ..exceptions import InvalidParameter
from ..ingest.trial import Intervention, Phase, Trial

if TYPE_CHECKING:
    from ..index import TrialIndex

__all__ = ["LETTER_PATTERN", "MAX_QUERY_CHARS", "QUERY_ID", "TextQuery", "Vocabulary", "check_query_text", "text_query"]

MAX_QUERY_CHARS = defaults.MAX_QUERY_CHARS
QUERY_ID = "NCT00000000"
"""The NCT ID of the document a text query becomes (no registered trial has it)."""

VOCABULARY_COLUMNS = ("conditions", "condition_mesh", "intervention_names", "intervention_mesh")
MAX_PHRASE_TOKENS = 8
MAX_VARIANTS = 3
"""Spellings of one matched phrase (``non-small cell`` / ``non small cell``) kept per phrase."""

_GENERIC = frozenset(
    "study studies trial trials phase patient patients subject subjects participant participants people adult adults "
    "treatment treatments therapy therapies drug drugs medication control controls placebo group groups arm arms "
    "intervention interventions other none na n a disease diseases disorder disorders condition conditions "
    "syndrome volunteer volunteers standard care usual dose doses".split()
)
"""Words every kind of trial uses: a phrase made only of these (and stop words) says nothing."""

_TOKEN = re.compile(r"[^\W_]+")
_PHASE = re.compile(r"\bphase\s*(0|1|2|3|4|iv|i{1,3})(?:\s*(?:/|-|and|or)\s*(?:phase\s*)?(1|2|3|i{1,3}))?\b", re.IGNORECASE)
_ROMAN = {"0": "0", "1": "1", "2": "2", "3": "3", "4": "4", "i": "1", "ii": "2", "iii": "3", "iv": "4"}
_PHASES = {"0": Phase.EARLY_PHASE1, "1": Phase.PHASE1, "2": Phase.PHASE2, "3": Phase.PHASE3, "4": Phase.PHASE4}


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """Lowercase word tokens of ``text`` with their character spans."""
    return [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


_LETTER = re.compile(r"[^\W\d_]")
"""A letter, in any script (the API's schema states the same pattern)."""
LETTER_PATTERN = _LETTER.pattern
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_query_text(text: object, *, max_chars: int = MAX_QUERY_CHARS) -> str:
    """The query text, control characters turned into spaces and stripped, or
    :class:`InvalidParameter` saying why it cannot be searched: not a string, empty, longer than
    ``max_chars``, or without a letter."""
    if not isinstance(text, str):
        raise InvalidParameter(f"the search query must be text, got {type(text).__name__}")
    text = _CONTROL.sub(" ", text).strip()
    if not text:
        raise InvalidParameter("the search query is empty: give a few words, e.g. 'metformin in type 2 diabetes'")
    if len(text) > max_chars:
        raise InvalidParameter(f"the search query is {len(text)} characters long; at most {max_chars} are read")
    if not _LETTER.search(text):
        raise InvalidParameter("the search query holds no word (no letter) to search for")
    return text


class Vocabulary:
    """The index's condition and intervention terms, matched as phrases in a text.

    Args:
        terms: per kind (``conditions``, ``condition_mesh``, ``intervention_names``,
            ``intervention_mesh``), the normalised terms the index encodes.
    """

    def __init__(self, terms: Mapping[str, Iterable[str]]):
        self.phrases: dict[tuple[str, ...], dict[str, list[str]]] = {}
        for kind, values in terms.items():
            for term in values:
                key = tuple(t for t, _, _ in _tokens(term))
                if not key or len(key) > MAX_PHRASE_TOKENS or not self._telling(key):
                    continue
                variants = self.phrases.setdefault(key, {}).setdefault(kind, [])
                if len(variants) < MAX_VARIANTS:
                    variants.append(term)
        self.longest = max((len(k) for k in self.phrases), default=0)

    @staticmethod
    def _telling(key: tuple[str, ...]) -> bool:
        """A phrase with at least one word of 3+ letters that is neither a stop word nor generic."""
        return any(len(t) >= 3 and not t.isdigit() and t not in ENGLISH_STOP_WORDS and t not in _GENERIC for t in key)

    @classmethod
    def from_index(cls, index: "TrialIndex") -> "Vocabulary":
        """The terms of the index's structured encoder (the values its trials record)."""
        transformers = index.structured_featurizer.column_transformer_.named_transformers_
        terms = {}
        for kind in VOCABULARY_COLUMNS:
            encoder = transformers.get(kind)
            terms[kind] = sorted(getattr(encoder, "vocabulary_", {}) or ())
        return cls(terms)

    def __len__(self) -> int:
        return len(self.phrases)

    def match(self, text: str) -> list[tuple[str, dict[str, list[str]]]]:
        """Non-overlapping phrases of ``text`` that are terms, longest first, left to right:
        ``(the text's own words, {kind: [terms]})``."""
        tokens = _tokens(text)
        out, i = [], 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                key = tuple(t for t, _, _ in tokens[i:i + n])
                if key in self.phrases:
                    out.append((text[tokens[i][1]:tokens[i + n - 1][2]], self.phrases[key]))
                    i += n
                    break
            else:
                i += 1
        return out


def _phases(text: str) -> tuple[Phase, ...] | None:
    found = []
    for match in _PHASE.finditer(text):
        for group in match.groups():
            if group:
                found.append(_PHASES[_ROMAN[group.lower()]])
    return tuple(sorted(set(found), key=list(Phase).index)) or None


@dataclasses.dataclass(frozen=True)
class TextQuery:
    """A free-text query read as a trial document, and what the text was read as."""

    text: str
    trial: Trial
    matched: dict[str, list[str]]
    """``conditions``, ``interventions`` (phrases of the text found in the index's vocabularies) and
    ``phase`` (phases it names)."""


def text_query(text: str, vocabulary: Vocabulary, *, summary: bool = defaults.SEARCH_FILLS_SUMMARY) -> TextQuery:
    """Read ``text`` as a trial document: see the module's docstring.

    Args:
        summary: also fill the summary field with the text (default
            :data:`similarity.defaults.SEARCH_FILLS_SUMMARY`).
    """
    text = check_query_text(text)
    conditions: dict[str, list[str]] = {"conditions": [], "condition_mesh": []}
    interventions: dict[str, list[str]] = {"intervention_names": [], "intervention_mesh": []}
    shown = {"conditions": [], "interventions": []}
    for words, kinds in vocabulary.match(text):
        for kind, terms in kinds.items():
            target = conditions if kind in conditions else interventions
            target[kind].extend(t for t in terms if t not in target[kind])
        for side, names in (("conditions", conditions), ("interventions", interventions)):
            if any(k in kinds for k in names) and words not in shown[side]:
                shown[side].append(words)
    phases = _phases(text)
    trial = Trial(
        nct_id=QUERY_ID,
        brief_title=text,
        brief_summary=text if summary else None,
        phases=phases,
        conditions=tuple(conditions["conditions"]) or None,
        condition_mesh=tuple(conditions["condition_mesh"]) or None,
        interventions=tuple(Intervention(None, n) for n in interventions["intervention_names"]) or None,
        intervention_mesh=tuple(interventions["intervention_mesh"]) or None,
        source="search query",
    )
    matched = {**shown, "phase": [p.value for p in phases or ()]}
    return TextQuery(text, trial, matched)
