"""The kind of a trial's interventions, read from their names: the head noun of each phrase.

A registry names an intervention with a noun phrase whose last noun says what kind of thing it is:
"autologous mesenchymal stem **cells**", "RAPA-501 autologous T **cells**", "pneumococcal conjugate
**vaccine**", "monoclonal **antibody** A27.15", "laparoscopic **surgery**". Two trials whose
interventions share that head give the same kind of therapy, in any disease, even where their
products share no other word. The head is found without any list of drugs or products: a name is
cut at prepositions, conjunctions and punctuation ("injection *of* allogeneic mesenchymal stem
cells" gives "injection" and "cell"), and each piece's last word of letters, singular, is a kind.
Codes and doses ("RAPA-501", "GSK1024850A", "200 mg") are not words of letters and never count, and
a participle after a noun ends the phrase ("dendritic cells *transfected* with RNA" gives "cell").
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["intervention_kinds"]

_CUT = re.compile(
    r"\b(?:of|with|without|for|in|into|plus|and|or|by|via|to|from|after|before|during|on|at|"
    r"versus|vs|than|as|using|under)\b|[,;:/()\[\]+&]"
)
_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]")
_SINGULAR_KEEP = ("ss", "us", "is", "ous", "ys", "as")
_UNITS = frozenset({"mg", "mcg", "ml", "kg", "dose", "doses", "day", "days", "daily", "week", "weeks", "times",
                    "hour", "hours", "iu", "units", "unit"})


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and len(word) > 3 and not word.endswith(_SINGULAR_KEEP):
        return word[:-1]
    return word


def intervention_kinds(names: Iterable[str | None] | None) -> frozenset[str]:
    """The head nouns of ``names`` (intervention names), lower case and singular."""
    kinds = set()
    for name in names or ():
        for piece in _CUT.split(str(name or "").lower()):
            words = []
            for token in piece.split():
                if token.endswith("ed") and words:  # a participle after the head ("cells transfected ...")
                    break
                if _WORD.fullmatch(token) and len(token) > 2 and token not in _UNITS:
                    words.append(token)
            if words:
                kinds.add(_singular(words[-1].strip("'-")))
    return frozenset(kinds)
