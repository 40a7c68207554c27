"""The similarity signals between a query trial and candidate rows of an index.

One column per signal, NaN where a signal is unavailable (a field or attribute that one of the two
trials lacks: unknown is not the same as different):

- ``semantic`` group: ``field:<name>``, the cosine of the two trials' embeddings of that field;
- ``structured`` group: ``attr:<name>``, the Jaccard overlap of the encoded values of an attribute
  (MeSH terms, conditions, intervention names and types, status, study type, purpose...), and
  ``attr:phase``, ``1 - |distance| / 3`` on the development path (N/A agrees only with N/A);
- ``lexical`` group: ``lexical``, BM25 of the query's terms in the candidate divided by BM25 of
  the query in itself, and ``lexical_cosine``, the cosine of the two trials' BM25 weight vectors
  (symmetric and length-normalised, like a TF-IDF cosine, from the same stored matrix).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from ..features.fields import STRUCTURED_COLUMNS
from .. import defaults
from ..index.store import phase_ordinal
from ..ingest.trial import Trial

__all__ = ["QueryFeatures", "Signals", "SignalComputer", "GROUPS", "phase_ordinal", "signal_group"]

if TYPE_CHECKING:
    from ..index import TrialIndex

GROUPS = defaults.SIGNAL_GROUPS


def signal_group(name: str) -> str:
    """The group of a signal name: ``field:*`` semantic, ``attr:*`` structured, else lexical."""
    return "semantic" if name.startswith("field:") else "structured" if name.startswith("attr:") else "lexical"


@dataclasses.dataclass
class QueryFeatures:
    """Everything the signals need from the query side."""

    trial: Trial
    row: int | None
    field_vectors: np.ndarray  # (F, d), zero rows for missing fields
    trial_vector: np.ndarray  # (d,)
    structured: sparse.csr_matrix  # (1, m)
    lexical: sparse.csr_matrix  # (1, V) binary term presence
    lexical_self: float
    lexical_weights: sparse.csr_matrix | None = None  # (1, V) the query's own BM25 weights


@dataclasses.dataclass
class Signals:
    """Signal values of candidate rows: ``values[i, j]`` is signal ``names[j]`` of ``rows[i]``."""

    rows: np.ndarray
    names: tuple[str, ...]
    groups: tuple[str, ...]
    values: np.ndarray  # (n, S) float64, NaN = unavailable

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def take(self, positions: np.ndarray) -> "Signals":
        """The signals of the candidates at ``positions`` (indices into ``rows``)."""
        return Signals(self.rows[positions], self.names, self.groups, self.values[positions])


class SignalComputer:
    """Computes :class:`Signals` against one index; precomputes what every query reuses."""

    def __init__(self, index: "TrialIndex"):
        self.index = index
        blocks = index.structured_featurizer.blocks_
        self.attributes = tuple(c for c in STRUCTURED_COLUMNS if c in blocks and c != "phase")
        self.names = (
            tuple(f"field:{f}" for f in index.config.text_fields)
            + tuple(f"attr:{a}" for a in self.attributes)
            + ("attr:phase", "lexical", "lexical_cosine")
        )
        self.groups = tuple(signal_group(n) for n in self.names)
        self._blocks = [blocks[a] for a in self.attributes]
        self._phase = index.columns["phase_ordinal"].astype(np.float64)

    def compute(self, query: QueryFeatures, rows: np.ndarray) -> Signals:
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        columns = []
        cand = np.asarray(self.index.field_vectors[rows], dtype=np.float32)  # (n, F, d)
        cos = np.einsum("nfd,fd->nf", cand, query.field_vectors).astype(np.float64)
        present = (np.abs(cand).sum(axis=2) > 0) & (np.abs(query.field_vectors).sum(axis=1) > 0)[None]
        columns.append(np.where(present, cos, np.nan))

        cand_struct = self.index.structured[rows]
        for block in self._blocks:
            q = query.structured[:, block]
            c = cand_struct[:, block]
            c_size = np.diff(c.indptr)
            if q.nnz == 0:
                columns.append(np.full((n, 1), np.nan))
                continue
            inter = np.asarray((c @ q.T).toarray()).ravel()
            union = c_size + q.nnz - inter
            columns.append(np.where(c_size > 0, inter / np.maximum(union, 1), np.nan)[:, None])

        q_phase = phase_ordinal(query.trial)
        c_phase = self._phase[rows]
        close = np.where(
            (c_phase >= 0) & (q_phase >= 0),
            1 - np.minimum(np.abs(c_phase - q_phase), 3) / 3,
            ((c_phase < 0) & (q_phase < 0)).astype(float),
        )
        columns.append(np.where(np.isnan(c_phase) | np.isnan(q_phase), np.nan, close)[:, None])

        cand_lexical = self.index.lexical[rows]
        bm25 = np.asarray((cand_lexical @ query.lexical.T).toarray()).ravel()
        columns.append(np.minimum(bm25 / max(query.lexical_self, 1e-12), 1.0)[:, None])
        columns.append(self._lexical_cosine(query, cand_lexical, rows)[:, None])
        return Signals(rows, self.names, self.groups, np.hstack(columns))

    def _lexical_cosine(self, query: QueryFeatures, cand_lexical: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
        weights = query.lexical_weights
        if weights is None and query.row is not None:
            weights = self.index.lexical[query.row]
        if weights is None or weights.nnz == 0:
            return np.full(len(rows), np.nan)
        q_norm = float(np.sqrt(np.square(weights.data.astype(np.float64)).sum()))
        dots = np.asarray((cand_lexical @ weights.T).toarray(), dtype=np.float64).ravel()
        c_norm = np.asarray(self.index.lexical_norms[rows], dtype=np.float64)
        return np.where(c_norm > 0, dots / np.maximum(c_norm * q_norm, 1e-12), np.nan)
