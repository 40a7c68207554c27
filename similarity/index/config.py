"""How an index is built: the model, the embedded fields, their weights, the backend."""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import defaults
from ..exceptions import InvalidParameter
from ..features import DEFAULT_TEXT_FIELDS, TERM_FIELDS, Runtime, TextFeaturizer, TextField
from .backends import BackendName
from .quantized import VECTOR_DTYPES

__all__ = ["IndexConfig"]


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """How an index is built. Everything here is part of the index's layout (see the manifest).

    Args:
        model: sentence-transformers model name or path.
        text_fields: the fields embedded one by one (see :mod:`similarity.features.fields`).
        field_weights: weight of each field in the trial vector that the backend searches.
        max_chunks: chunks embedded per long field (1 = the model's window only).
        chunk_words: words per chunk.
        backend: vector backend (``auto``: exact FAISS up to 200k trials, IVF-SQ8 above).
        term_fields: list fields embedded term by term (each distinct condition, keyword, MeSH
            term or intervention once for the whole corpus, a trial's field vector the mean of
            its terms'; default: conditions and interventions); the other fields are embedded as
            one text. Indexes saved before this option existed embedded every field as one text
            and load with ``()``.
        neighbours: length of the neighbour list precomputed for each trial (0: none; None:
            :data:`~similarity.defaults.NEIGHBOURS_K` above
            :data:`~similarity.defaults.NEIGHBOURS_MIN` trials, none below).
        vectors: how the build stores its field vectors: ``int8`` (the default: scalar
            quantised, one scale per dimension, half the memory; see
            :mod:`~similarity.index.quantized`) or ``float16``. Indexes saved before this option
            hold float16.
        runtime: what runs the text model (``torch``, ``onnx``, ``onnx-int8``; see
            :class:`~similarity.features.Runtime`); queries embed with the index's runtime. Indexes
            saved before this option ran PyTorch and load with ``torch``.
    """

    model: str = defaults.DEFAULT_MODEL
    text_fields: tuple[str, ...] = tuple(f.value for f in DEFAULT_TEXT_FIELDS)
    field_weights: tuple[float, ...] | None = None
    max_chunks: int = 1
    chunk_words: int = 160
    backend: BackendName = "auto"
    term_fields: tuple[str, ...] = tuple(f.value for f in TERM_FIELDS)
    neighbours: int | None = None
    runtime: str = defaults.RUNTIME
    vectors: str = defaults.VECTORS

    def __post_init__(self):
        known = [f.value for f in TextField]
        unknown = [f for f in (*self.text_fields, *self.term_fields) if not isinstance(f, TextField) and f not in known]
        if unknown:
            raise InvalidParameter(f"unknown text field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}")
        if not self.text_fields:
            raise InvalidParameter("text_fields must name at least one field")
        fields = tuple(TextField(f).value for f in self.text_fields)
        object.__setattr__(self, "text_fields", fields)
        terms = tuple(TextField(f).value for f in self.term_fields)
        allowed = (TextField.CONDITIONS.value, TextField.INTERVENTIONS.value, TextField.OUTCOMES.value)
        if not set(terms) <= set(allowed):
            raise InvalidParameter(f"term_fields must be among {allowed} (list fields); got {terms}")
        object.__setattr__(self, "term_fields", terms)
        object.__setattr__(self, "runtime", Runtime.parse(self.runtime).value)
        if self.vectors not in VECTOR_DTYPES:
            raise InvalidParameter(f"vectors must be one of {', '.join(VECTOR_DTYPES)}, got {self.vectors!r}")
        if self.neighbours is not None and self.neighbours < 0:
            raise InvalidParameter(f"neighbours must be >= 0 or None (auto), got {self.neighbours}")
        weights = self.field_weights
        if weights is None:
            weights = tuple(defaults.FIELD_WEIGHTS[f] for f in fields)
        if len(weights) != len(fields) or any(w < 0 for w in weights) or not sum(weights):
            raise InvalidParameter(
                f"field_weights must be {len(fields)} non-negative numbers, not all 0; got {weights}"
            )
        object.__setattr__(self, "field_weights", tuple(float(w) for w in weights))

    def layout(self) -> dict[str, Any]:
        """The settings a saved index must share with the code that reads it."""
        return {
            "model": self.model,
            "text_fields": list(self.text_fields),
            "max_chunks": self.max_chunks,
            "chunk_words": self.chunk_words,
            "term_fields": [f for f in self.term_fields if f in self.text_fields],
            "runtime": self.runtime,
            "vectors": self.vectors,
        }

    def term_columns(self) -> tuple[int, ...]:
        """Positions in ``text_fields`` of the fields embedded term by term."""
        return tuple(j for j, f in enumerate(self.text_fields) if f in self.term_fields)

    def text_featurizer(self, *, cache_dir: str | None = None, progress: bool = False) -> TextFeaturizer:
        """The (unfitted) featurizer that embeds this layout's fields: the one place it is made."""
        return TextFeaturizer(
            self.model,
            max_chunks=self.max_chunks,
            chunk_words=self.chunk_words,
            term_columns=self.term_columns(),
            cache_dir=cache_dir,
            show_progress_bar=progress,
            runtime=self.runtime,
        )

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> "IndexConfig":
        """The config a manifest saved (JSON lists back to tuples; builds older than
        ``term_fields`` embedded whole fields, those older than ``runtime`` ran PyTorch, and those
        older than ``vectors`` stored float16)."""
        saved = {"term_fields": [], "runtime": "torch", "vectors": "float16", **saved}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
