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

from ..exceptions import InvalidParameter

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
        self._fit_counts(counts)
        return self

    def _fit_counts(self, counts) -> None:
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf_ = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.avgdl_ = float(counts.sum() / max(n_docs, 1)) or 1.0

    def transform(self, X) -> sparse.csr_matrix:
        """BM25 document-side weights, one row per text."""
        check_is_fitted(self, "idf_")
        return self.weigh(self.vectorizer_.transform(list(X)))

    def weigh(self, counts) -> sparse.csr_matrix:
        """BM25 document-side weights from raw term counts over the fitted vocabulary."""
        check_is_fitted(self, "idf_")
        counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        norm = self.k1 * (1 - self.b + self.b * lengths / self.avgdl_)
        tf = counts.data
        row_norm = np.repeat(norm, np.diff(counts.indptr))
        counts.data = self.idf_[counts.indices] * tf * (self.k1 + 1) / (tf + row_norm)
        return counts

    def counts_of(self, weights) -> sparse.csr_matrix | None:
        """Invert :meth:`weigh`: the raw term counts behind BM25 rows of this vectorizer.

        A row's length is not stored, but it follows from its weights: with ``u = w / idf`` each
        term gives ``tf = u * n / (k1 + 1 - u)`` for the row's norm ``n = k1 (1 - b + b len / avgdl)``,
        and ``len = sum(tf)`` solves for ``n``. Returns None when the weights do not invert
        cleanly (``k1 = 0``, or rounding would change a count), so the caller can refit instead.
        """
        check_is_fitted(self, "idf_")
        weights = sparse.csr_matrix(weights)
        if self.k1 <= 0:
            return None
        u = weights.data.astype(np.float64) / self.idf_[weights.indices].astype(np.float64)
        ratio = u / np.maximum(self.k1 + 1 - u, 1e-12)
        if self.b > 0:
            per_row = np.add.reduceat(ratio, weights.indptr[:-1]) if len(ratio) else np.zeros(0)
            per_row = np.where(np.diff(weights.indptr) > 0, per_row, 0.0)
            denom = 1 - self.k1 * self.b * per_row / self.avgdl_
            if np.any(denom <= 0):
                return None
            norm = self.k1 * (1 - self.b) / denom
        else:
            norm = np.full(weights.shape[0], float(self.k1))
        tf = ratio * np.repeat(norm, np.diff(weights.indptr))
        counts = np.rint(tf)
        if len(tf) and (np.abs(tf - counts).max() > 0.05 or counts.min() < 1):
            return None
        out = sparse.csr_matrix((counts.astype(np.float32), weights.indices.copy(), weights.indptr.copy()), shape=weights.shape)
        return out

    def refit_counts(self, counts, vocabulary: dict[str, int]) -> "BM25Vectorizer":
        """A copy fitted on raw ``counts`` over ``vocabulary`` (term -> column), as ``fit`` would be.

        Lets an index update count only its new documents: the counts of the others come from
        :meth:`counts_of`. Equal to ``fit`` on the same documents when ``min_df`` is 1.
        """
        import copy

        check_is_fitted(self, "idf_")
        other = copy.copy(self)
        other.vectorizer_ = copy.copy(self.vectorizer_)
        other.vectorizer_.vocabulary_ = dict(vocabulary)
        other._fit_counts(sparse.csr_matrix(counts, dtype=np.float32))
        return other

    def query_transform(self, X) -> sparse.csr_matrix:
        """Queries as binary term-presence rows (each query term counted once)."""
        check_is_fitted(self, "idf_")
        counts = sparse.csr_matrix(self.vectorizer_.transform(list(X)), dtype=np.float32)
        counts.data[:] = 1.0
        return counts
