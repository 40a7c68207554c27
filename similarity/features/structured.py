"""The structured featurizer: registry attributes (phase, status, MeSH terms...) one-hot encoded.

A scikit-learn transformer over a 2-D table of attribute values built by
:func:`similarity.features.fields.structured_table`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.validation import check_is_fitted, validate_data

from ..exceptions import InvalidParameter
from ._cells import as_cells, missing

__all__ = ["StructuredFeaturizer"]


class _SplitTerms:
    """Analyzer for multi-valued cells: ``'a|b'`` -> ``['a', 'b']`` (picklable, unlike a lambda)."""

    def __init__(self, separator: str):
        self.separator = separator

    def __call__(self, cell) -> list[str]:
        return [t for t in str(cell).split(self.separator) if t]


class StructuredFeaturizer(TransformerMixin, BaseEstimator):
    """One-hot / multi-hot encoding of structured attributes, one block of columns per attribute.

    Single-valued columns go through ``OneHotEncoder(handle_unknown="ignore")`` and multi-valued
    ones (``'a|b'`` cells) through a binary ``CountVectorizer``, in one ``ColumnTransformer``. A
    missing value (empty string, ``None``, NaN) encodes as all zeros, so two unknowns never count
    as a match. ``blocks_`` maps each column name to its slice of the output.

    Args:
        columns: names of the input columns (default ``x0, x1, ...``).
        multi_valued: names of the columns whose cells hold several ``separator``-joined values.
        separator: the separator of multi-valued cells.
    """

    def __init__(self, columns: Sequence[str] | None = None, multi_valued: Sequence[str] = (), separator: str = "|"):
        self.columns = columns
        self.multi_valued = multi_valued
        self.separator = separator

    def _strings(self, X) -> np.ndarray:
        cells = as_cells(X)
        out = np.empty(cells.shape, dtype=object)
        for index, value in np.ndenumerate(cells):
            out[index] = "" if missing(value) else str(value)
        return out

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=True)
        names = list(self.columns) if self.columns is not None else [f"x{j}" for j in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise InvalidParameter(f"columns names {len(names)} columns but X has {X.shape[1]}")
        unknown = set(self.multi_valued) - set(names)
        if unknown:
            raise InvalidParameter(f"multi_valued names unknown columns {sorted(unknown)}; columns: {names}")
        cells = self._strings(X)
        transformers = []
        for j, name in enumerate(names):
            if name in self.multi_valued:
                values = {t for cell in cells[:, j] for t in _SplitTerms(self.separator)(cell)}
                encoder = CountVectorizer(analyzer=_SplitTerms(self.separator), binary=True, dtype=np.float32)
                transformers.append((name, encoder if values else "drop", j))
            else:
                values = sorted({c for c in cells[:, j] if c})
                encoder = OneHotEncoder(categories=[values], handle_unknown="ignore", dtype=np.float32)
                transformers.append((name, encoder if values else "drop", [j]))
        self.column_transformer_ = ColumnTransformer(transformers, sparse_threshold=1.0)
        self.column_transformer_.fit(cells)
        self.names_ = names
        self.blocks_ = {
            name: s for name, s in self.column_transformer_.output_indices_.items() if name in names
        }
        return self

    def transform(self, X) -> sparse.csr_matrix:
        check_is_fitted(self, "column_transformer_")
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=False)
        out = self.column_transformer_.transform(self._strings(X))
        return sparse.csr_matrix(out, dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = []
        return tags
