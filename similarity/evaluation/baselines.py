"""Baselines the engine is compared against on the same index's trials, in the same run.

Each scores candidate rows of a :class:`TrialIndex` against a query row:
``tfidf`` (cosine of TF-IDF vectors of the concatenated text), ``bm25`` (Okapi BM25 of the query's
terms, the index's lexical matrix), ``dense`` (cosine of one plain embedding of the
concatenated text, which the model cuts at 256 tokens) and ``rrf`` (reciprocal-rank fusion of
``bm25`` and ``dense`` over the rows being ranked, ``1/(60 + rank)`` each: the plain hybrid).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from ..exceptions import InvalidParameter
from ..features.fields import concatenated_text
from ..index.trial_index import TrialIndex

__all__ = ["BaselineName", "Baseline", "make_baseline", "fit_baselines", "BASELINES"]

BaselineName = Literal["tfidf", "bm25", "dense", "rrf"]
BASELINES: tuple[str, ...] = ("tfidf", "bm25", "dense", "rrf")


class Baseline:
    """Scores of every or some rows of an index against one of its rows."""

    name: str

    def fit(self, index: TrialIndex) -> "Baseline":
        raise NotImplementedError

    def scores(self, query_row: int, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def text_scores(self, text: str, rows: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` against a free-text query (the search evaluation)."""
        raise NotImplementedError


class TfidfBaseline(Baseline):
    name = "tfidf"

    def fit(self, index):
        self.vectorizer_ = TfidfVectorizer(sublinear_tf=True, stop_words="english", dtype=np.float32)
        self.matrix_ = self.vectorizer_.fit_transform([concatenated_text(t) for t in index.trials]).tocsr()
        return self

    def scores(self, query_row, rows):
        return np.asarray((self.matrix_[rows] @ self.matrix_[query_row].T).toarray()).ravel()

    def text_scores(self, text, rows):
        return np.asarray((self.matrix_[rows] @ self.vectorizer_.transform([text]).T).toarray()).ravel()


class BM25Baseline(Baseline):
    name = "bm25"

    def fit(self, index):
        self.docs_ = index.lexical
        self.vectorizer_ = index.lexical_vectorizer
        return self

    def text_scores(self, text, rows):
        return np.asarray((self.docs_[rows] @ self.vectorizer_.query_transform([text]).T).toarray()).ravel()

    def scores(self, query_row, rows):
        query = self.docs_[query_row].copy()
        query.data[:] = 1.0
        return np.asarray((self.docs_[rows] @ query.T).toarray()).ravel()


class DenseBaseline(Baseline):
    name = "dense"

    def __init__(self, cache_dir: str | None = None, rows: np.ndarray | None = None):
        self.cache_dir = cache_dir
        self.rows = rows

    def fit(self, index):
        featurizer = index.text_featurizer(cache_dir=self.cache_dir)
        featurizer.show_progress_bar = True
        rows = np.arange(len(index)) if self.rows is None else np.asarray(self.rows)
        self.vectors_ = np.zeros((len(index), featurizer.dim_), dtype=np.float32)
        self.vectors_[rows] = featurizer.encode_texts([concatenated_text(index.trials[r]) for r in rows])
        featurizer.show_progress_bar = False
        self.featurizer_ = featurizer
        return self

    def scores(self, query_row, rows):
        return self.vectors_[rows] @ self.vectors_[query_row]

    def text_scores(self, text, rows):
        return self.vectors_[rows] @ self.featurizer_.encode_texts([text])[0]


class RRFBaseline(Baseline):
    """Reciprocal-rank fusion of BM25 and dense over the rows being scored (k = 60)."""

    name = "rrf"

    def __init__(self, cache_dir: str | None = None, rows: np.ndarray | None = None, k: float = 60.0):
        self.cache_dir = cache_dir
        self.rows = rows
        self.k = k

    def fit(self, index, parts: tuple[Baseline, Baseline] | None = None):
        """``parts``: already fitted ``bm25`` and ``dense`` baselines of ``index`` to reuse."""
        self.parts_ = parts or (BM25Baseline().fit(index), DenseBaseline(cache_dir=self.cache_dir, rows=self.rows).fit(index))
        return self

    def scores(self, query_row, rows):
        return self._fuse([part.scores(query_row, rows) for part in self.parts_])

    def text_scores(self, text, rows):
        return self._fuse([part.text_scores(text, rows) for part in self.parts_])

    def _fuse(self, scores: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(len(scores[0]))
        for part in scores:
            order = np.argsort(-part, kind="stable")
            ranks = np.empty(len(order))
            ranks[order] = np.arange(1, len(order) + 1)
            out += 1.0 / (self.k + ranks)
        return out


def make_baseline(name: str, *, cache_dir: str | None = None, rows: np.ndarray | None = None) -> Baseline:
    """A new baseline by name; ``rows`` limits which trials ``dense`` embeds (rerank mode)."""
    if name == "tfidf":
        return TfidfBaseline()
    if name == "bm25":
        return BM25Baseline()
    if name == "dense":
        return DenseBaseline(cache_dir=cache_dir, rows=rows)
    if name == "rrf":
        return RRFBaseline(cache_dir=cache_dir, rows=rows)
    raise InvalidParameter(f"unknown baseline {name!r}; allowed: {', '.join(BASELINES)}")


def fit_baselines(index: TrialIndex, names: Sequence[str], *, cache_dir: str | None = None,
                  rows: np.ndarray | None = None) -> dict[str, Baseline]:
    """The baselines ``names`` fitted on ``index``, each once (``rrf`` fuses the run's own bm25 and dense)."""
    fitted: dict[str, Baseline] = {}

    def fit(name: str) -> Baseline:
        if name not in fitted:
            baseline = make_baseline(name, cache_dir=cache_dir, rows=rows)
            parts = (fit("bm25"), fit("dense")) if name == "rrf" else None
            fitted[name] = baseline.fit(index, parts=parts) if parts else baseline.fit(index)
        return fitted[name]

    return {name: fit(name) for name in names}
