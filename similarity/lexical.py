"""BM25 as a scikit-learn vectorizer: documents weighted once, queries as term sets.

``score(q, d) = sum over terms t of q: idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))``
is a sparse product ``query_transform(q) @ transform(d).T``, so a whole candidate list is scored
in one matrix product. Used as the lexical signal of the blend and as the ``bm25`` baseline.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.utils.validation import check_is_fitted

from .exceptions import InvalidParameter

__all__ = ["BM25Vectorizer"]


class BM25Vectorizer(TransformerMixin, BaseEstimator):
    """Okapi BM25 document weights over a fitted vocabulary.

    Args:
        k1: term-frequency saturation.
        b: length normalisation.
        min_df: ignore terms in fewer documents than this.
        stop_words: passed to ``CountVectorizer``.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, min_df: int = 1, stop_words: str | None = "english"):
        self.k1 = k1
        self.b = b
        self.min_df = min_df
        self.stop_words = stop_words

    def fit(self, X, y=None):
        """Learn the vocabulary, idf and average length from an iterable of texts."""
        if not 0 <= self.b <= 1 or self.k1 < 0:
            raise InvalidParameter(f"need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        texts = list(X)
        self.vectorizer_ = CountVectorizer(
            stop_words=self.stop_words, min_df=self.min_df, token_pattern=r"(?u)\b\w[\w-]*\w\b|\b\w\b",
            dtype=np.float32,
        )
        counts = self.vectorizer_.fit_transform(texts)
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf_ = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.avgdl_ = float(counts.sum() / max(n_docs, 1)) or 1.0
        return self

    def transform(self, X) -> sparse.csr_matrix:
        """BM25 document-side weights, one row per text."""
        check_is_fitted(self, "idf_")
        counts = sparse.csr_matrix(self.vectorizer_.transform(list(X)), dtype=np.float32)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl_)
        tf = counts.data
        row_norm = np.repeat(norm, np.diff(counts.indptr))
        counts.data = self.idf_[counts.indices] * tf * (self.k1 + 1) / (tf + row_norm)
        return counts

    def query_transform(self, X) -> sparse.csr_matrix:
        """Queries as binary term-presence rows (each query term counted once)."""
        check_is_fitted(self, "idf_")
        counts = sparse.csr_matrix(self.vectorizer_.transform(list(X)), dtype=np.float32)
        counts.data[:] = 1.0
        return counts
