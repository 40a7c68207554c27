"""Features: what of a :class:`~similarity.ingest.Trial` is embedded, encoded or counted.

:mod:`.fields` turns trials into tables (one text per field, one value per attribute);
:class:`TextFeaturizer` embeds the text columns with sentence-transformers (through an
:class:`EmbeddingCache`), :class:`StructuredFeaturizer` one-hot encodes the attributes and
:class:`BM25Vectorizer` weighs the terms. All three are scikit-learn transformers.
"""

from .embedding_cache import EmbeddingCache
from .fields import (
    DEFAULT_TEXT_FIELDS,
    FAST_TEXT_FIELDS,
    MULTI_VALUED_COLUMNS,
    STRUCTURED_COLUMNS,
    TERM_FIELDS,
    TextField,
    concatenated_text,
    field_text,
    structured_table,
    text_table,
)
from .lexical import BM25Vectorizer
from .structured import StructuredFeaturizer
from .onnx_runtime import Runtime
from .text import DEFAULT_MODEL, TextFeaturizer, load_sentence_model

__all__ = [
    "BM25Vectorizer",
    "DEFAULT_MODEL",
    "DEFAULT_TEXT_FIELDS",
    "EmbeddingCache",
    "FAST_TEXT_FIELDS",
    "MULTI_VALUED_COLUMNS",
    "Runtime",
    "STRUCTURED_COLUMNS",
    "StructuredFeaturizer",
    "TERM_FIELDS",
    "TextFeaturizer",
    "TextField",
    "concatenated_text",
    "field_text",
    "load_sentence_model",
    "structured_table",
    "text_table",
]
