"""The ranker: candidates from the vector backend, re-scored by a blend of similarity signals.

1. The query's trial vector (weighted mean of its field embeddings) fetches ``n_candidates``
   trials from the backend; filters run *inside* that search, so a filtered list still has ``k``
   entries whenever ``k`` trials match. The trial itself is never a candidate.
2. :class:`~similarity.ranking.signals.SignalComputer` computes per-field cosines, structured agreements
   and lexical (BM25) similarities for each candidate; a blend (:mod:`similarity.ranking.blend`: the one
   saved in the manifest, by default the shipped z-score fusion) turns them into the ``semantic``,
   ``structured`` and ``lexical`` components, which add up to the score, and orders the
   candidates. Under a cascade blend ``why.stage`` says which stage placed a trial.
3. Near-duplicates (one programme's near-identical registrations) are spaced out below the top
   ``k`` by default (:mod:`similarity.ranking.diversity`; ``diversity=None`` turns it off).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from .. import defaults
from ..exceptions import InvalidParameter
from ..features import STRUCTURED_COLUMNS, concatenated_text, structured_table, text_table
from ..features.batching import MicroBatcher
from ..index import TrialIndex
from ..index.store import column_mask
from ..index.stored_lists import StoredLists
from ..ingest import Trial
from .blend import Blend, blend_from_dict, default_blend
from .diversity import Diversity
from .explain import explain
from .filters import Filters
from .signals import QueryFeatures, Signals, SignalComputer
from .precompute import ranker_settings
from .aspects import ASPECT_FIELDS, Aspect, aspect_blend
from .coverage import CoveringBlend
from .text_query import TextQuery, Vocabulary, text_query

__all__ = ["Filters", "RelatedTrial", "Ranker", "QueryFeatures", "SearchResult"]


@dataclasses.dataclass(frozen=True)
class RelatedTrial:
    """One entry of a related list."""

    nct_id: str
    title: str
    status: str | None
    phase: str | None
    score: float
    why: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The trials most related to a free-text query, and what the text was read as."""

    query: str
    matched: dict[str, list[str]]
    related: list[RelatedTrial]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "matched": self.matched, "related": [r.to_dict() for r in self.related]}


class Ranker:
    """Related lists from a :class:`TrialIndex`.

    Args:
        index: the loaded index.
        blend: how signals are combined (default: the blend saved in the manifest, else
            :func:`~similarity.ranking.blend.default_blend`).
        n_candidates: trials fetched from the vector backend before the blend re-scores them.
        diversity: the :class:`~similarity.ranking.diversity.Diversity` policy for near-duplicate trials
            (default: spaced out below the top ``k``), or ``None`` to list them as ranked.
    """

    def __init__(
        self,
        index: TrialIndex,
        blend: Blend | None = None,
        n_candidates: int = defaults.N_CANDIDATES,
        diversity: Diversity | None = Diversity(),
    ):
        if n_candidates < 1:
            raise InvalidParameter(f"n_candidates must be >= 1, got {n_candidates}")
        self.index = index
        self.signals = SignalComputer(index)
        if blend is None and index.manifest.blend is not None:
            blend = blend_from_dict(index.manifest.blend)
        self.blend = blend or default_blend(self.signals.names)
        self.n_candidates = n_candidates
        self.diversity = diversity
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._vocabulary: Vocabulary | None = None
        self.use_stored = True
        self._stored_match: bool | None = None
        self._aspects: dict[Aspect, "Ranker"] = {}
        self._embed: MicroBatcher | None = None

    def with_blend(self, blend: Blend | None = None, *, diversity=..., stored: bool | None = None) -> "Ranker":
        """A ranker sharing this one's index and precomputed data, with another blend (or diversity);
        ``stored=False``: one that always ranks, never reading the lists stored with the index."""
        other = copy.copy(self)
        if blend is not None:
            other.blend = blend
        if diversity is not ...:
            other.diversity = diversity
        if stored is not None:
            other.use_stored = stored
        other._aspects = {}
        other._stored_match = None
        return other

    def stored_lists(self, k: int) -> StoredLists | None:
        """The index's stored lists, where they answer this ranker's unfiltered ``k`` (same settings)."""
        lists = self.index.related_lists
        if not self.use_stored or lists is None or k > lists.k:
            return None
        if self._stored_match is None:  # once per ranker, not on every request
            self._stored_match = lists.settings == ranker_settings(self)
        return lists if self._stored_match else None

    # -------------------------------------------------------------- query features
    def features(self, nct_id: str) -> QueryFeatures:
        """Query features of an indexed trial, read from the index (no model needed)."""
        row = self.index.row(nct_id)
        fv = np.asarray(self.index.field_vectors[row], dtype=np.float32)
        lexical = self.index.lexical[row].copy()
        lexical.data[:] = 1.0
        return QueryFeatures(
            trial=self.index.trials[row],
            row=row,
            field_vectors=fv,
            trial_vector=self.index.trial_vectors(fv[None])[0],
            structured=self.index.structured[row],
            lexical=lexical,
            lexical_self=float((lexical @ self.index.lexical[row].T).toarray()[0, 0]),
            lexical_weights=self.index.lexical[row],
        )

    def batch_documents(self, max_rows: int = 32) -> None:
        """Embed the documents of concurrent calls (new documents, searches) in one encoder call.

        For a service: requests handled on several threads hand their texts to one worker thread,
        which embeds everything waiting at once (:class:`~similarity.features.batching.MicroBatcher`;
        a lone request is not delayed). Rankers made from this one share it.
        """
        self._embed = MicroBatcher(lambda rows: self.index.text_featurizer().transform(rows), max_rows=max_rows)

    def features_of_trial(self, trial: Trial) -> QueryFeatures:
        """Query features of a trial document that is not in the index (loads the model)."""
        featurizer = self.index.text_featurizer()
        texts = text_table([trial], self.index.config.text_fields)
        embed = self._embed or featurizer.transform
        fv = embed(texts).reshape(len(self.index.config.text_fields), featurizer.dim_)
        text = concatenated_text(trial)
        vectorizer = self.index.lexical_vectorizer
        lexical = vectorizer.query_transform([text])
        weights = vectorizer.transform([text])
        return QueryFeatures(
            trial=trial,
            row=None,
            field_vectors=fv,
            trial_vector=self.index.trial_vectors(fv[None])[0],
            structured=self.index.structured_featurizer.transform(
                structured_table([trial], self.index.manifest.structured_columns or STRUCTURED_COLUMNS)),
            lexical=lexical,
            lexical_self=float((lexical @ weights.T).toarray()[0, 0]),
            lexical_weights=weights,
        )

    # -------------------------------------------------------------- scoring
    def score(self, query: QueryFeatures, rows: np.ndarray) -> tuple[Signals, dict[str, np.ndarray], np.ndarray]:
        """Signals of ``rows`` against ``query``, the blend's components, and the scores (their sum)."""
        signals, components, _ = self.rank(query, rows)
        return signals, components, sum(components.values())

    def rank(self, query: QueryFeatures, rows: np.ndarray) -> tuple[Signals, dict[str, np.ndarray], np.ndarray]:
        """Signals of ``rows`` against ``query``, the blend's components, and the blend's order of
        the rows (positions into ``rows``, best first; for a cascade, not the scores' order)."""
        signals = self.signals.compute(query, rows)
        components, order = self.blend.rank(signals)
        return signals, components, order

    # -------------------------------------------------------------- related lists
    def allowed_rows(self, filters: Filters | None) -> np.ndarray | None:
        """Rows matching ``filters`` (``None`` when there is no filter)."""
        keep = filters.mask(self.index.columns, self._mask) if filters else None
        return None if keep is None else np.flatnonzero(keep)

    def _mask(self, name: str, value) -> np.ndarray:
        key = (name, value.value)
        if key not in self._masks:
            self._masks[key] = column_mask(self.index.columns, name, value)
        return self._masks[key]

    def candidates(self, query: QueryFeatures, n: int, filters: Filters | None = None) -> np.ndarray:
        """Up to ``n`` candidate rows from the vector backend, filtered inside the search, self excluded."""
        allowed = self.allowed_rows(filters)
        if allowed is not None and query.row is not None:
            allowed = allowed[allowed != query.row]
        if allowed is not None and len(allowed) == 0:
            return np.zeros(0, dtype=np.int64)
        extra = 1 if query.row is not None and allowed is None else 0
        _, ids = self.index.backend.search(query.trial_vector[None], n + extra, allowed=allowed)
        ids = ids[0]
        return ids[(ids >= 0) & (ids != (query.row if query.row is not None else -1))][:n]

    def related(self, nct_id: str, k: int = 10, *, filters: Filters | None = None,
                aspect: Aspect | str | None = None) -> list[RelatedTrial]:
        """The ``k`` trials most related to indexed trial ``nct_id`` (raises TrialNotFound), overall
        or by one ``aspect`` (:mod:`.aspects`: condition, intervention, design).

        Unfiltered overall lists of up to :data:`~similarity.defaults.STORED_LIST_K` trials are read
        from the lists stored with the index where it has them (:mod:`.precompute`): the same items.
        """
        if k < 1:
            raise InvalidParameter(f"k must be >= 1, got {k}")
        aspect = Aspect.parse(aspect)
        if aspect is Aspect.OVERALL and not filters and (lists := self.stored_lists(k)) is not None:
            return [RelatedTrial(**item) for item in lists.items(self.index.row(nct_id), k)]
        query = self.features(nct_id)
        lists = self.index.backend.neighbours
        if aspect is Aspect.OVERALL and lists is not None and not filters and max(self.n_candidates, k) <= lists.k:
            # Precomputed at build time (similarity.index.neighbours): the rows the search would return.
            return self._related(query, k, filters, rows=lists.rows(query.row, max(self.n_candidates, k)))
        return self._related(query, k, filters, aspect=aspect)

    def related_to_trial(self, trial: Trial, k: int = 10, *, filters: Filters | None = None,
                         aspect: Aspect | str | None = None) -> list[RelatedTrial]:
        """The ``k`` indexed trials most related to a trial document (indexed or not)."""
        aspect = Aspect.parse(aspect)
        if trial.nct_id in self.index and self.index.trial(trial.nct_id) == trial:
            return self.related(trial.nct_id, k, filters=filters, aspect=aspect)
        query = self.features_of_trial(trial)
        if trial.nct_id in self.index:  # a newer version of an indexed trial: never list itself
            query.row = self.index.row(trial.nct_id)
        return self._related(query, k, filters, aspect=aspect)

    def related_json(self, nct_id: str, k: int) -> bytes | None:
        """The stored unfiltered list of ``nct_id`` as the inside of a JSON array, or None where this
        ranker must rank it (no stored lists, other settings, ``k`` beyond them)."""
        lists = self.stored_lists(k)
        return None if lists is None else lists.items_json(self.index.row(nct_id), k)

    @property
    def vocabulary(self) -> Vocabulary:
        """The index's condition and intervention terms (read once, on the first search)."""
        if self._vocabulary is None:
            self._vocabulary = Vocabulary.from_index(self.index)
        return self._vocabulary

    def text_query(self, text: str, *, summary: bool = defaults.SEARCH_FILLS_SUMMARY) -> TextQuery:
        """``text`` read as a trial document (raises InvalidParameter for an empty, over-long or
        word-less text); see :mod:`similarity.ranking.text_query`."""
        return text_query(text, self.vocabulary, summary=summary)

    def search(self, text: str, k: int = 10, *, filters: Filters | None = None) -> SearchResult:
        """The ``k`` indexed trials most related to a free-text query (loads the model); raises
        InvalidParameter for an empty, over-long or letter-less text."""
        return self.search_query(self.text_query(text), k, filters=filters)

    def search_query(self, parsed: TextQuery, k: int = 10, *, filters: Filters | None = None,
                     exclude: str | None = None) -> SearchResult:
        """The ``k`` indexed trials most related to a text already read as a document;
        ``exclude`` leaves one indexed trial out of the list (an evaluation's query trial)."""
        if k < 1:
            raise InvalidParameter(f"k must be >= 1, got {k}")
        query = self.features_of_trial(parsed.trial)
        if exclude is not None:
            query.row = self.index.row(exclude)
        return SearchResult(parsed.text, parsed.matched, self._related(query, k, filters))

    def for_aspect(self, aspect: Aspect | str) -> "Ranker":
        """The ranker of one aspect's lists: this one with the aspect's blend (overall: itself)."""
        aspect = Aspect.parse(aspect)
        if aspect is Aspect.OVERALL:
            return self
        if aspect not in self._aspects:
            self._aspects[aspect] = self.with_blend(aspect_blend(aspect, self.signals.names), stored=False)
        return self._aspects[aspect]

    def aspect_candidates(self, query: QueryFeatures, aspect: Aspect, n: int, filters: Filters | None) -> np.ndarray:
        """The overall candidates, and for the condition and intervention aspects the ``n`` trials
        whose field of that kind is nearest the query's (exact scan up to
        :data:`~similarity.defaults.EXACT_FIELD_SCAN` trials, else the vector backend's search with
        the field's vector)."""
        rows = self.candidates(query, n, filters)
        field = ASPECT_FIELDS.get(aspect)
        fields = list(self.index.config.text_fields)
        if field not in fields or not np.abs(query.field_vectors[fields.index(field)]).sum():
            return rows
        vector = np.asarray(query.field_vectors[fields.index(field)], dtype=np.float32)
        allowed = self.allowed_rows(filters)
        if len(self.index) <= defaults.EXACT_FIELD_SCAN:
            j, step = fields.index(field), 16_384  # in blocks: never a copy of the whole column
            scores = np.concatenate([
                np.asarray(self.index.field_vectors[start:start + step, j], dtype=np.float32) @ vector
                for start in range(0, len(self.index), step)])
            keep = np.zeros(len(scores), dtype=bool)
            keep[allowed if allowed is not None else slice(None)] = True
            if query.row is not None:
                keep[query.row] = False
            scores = np.where(keep, scores, -np.inf)
            near = np.argsort(-scores, kind="stable")[:n]
            near = near[np.isfinite(scores[near])]
        else:
            _, ids = self.index.backend.search(vector[None], n + 1, allowed=allowed)
            near = ids[0][(ids[0] >= 0) & (ids[0] != (query.row if query.row is not None else -1))][:n]
        return np.concatenate([rows, near[~np.isin(near, rows)]])

    def _related(self, query: QueryFeatures, k: int, filters: Filters | None, rows: np.ndarray | None = None,
                 aspect: Aspect = Aspect.OVERALL) -> list[RelatedTrial]:
        if k < 1:
            raise InvalidParameter(f"k must be >= 1, got {k}")
        if aspect is not Aspect.OVERALL:
            ranker = self.for_aspect(aspect)
            rows = self.aspect_candidates(query, aspect, max(self.n_candidates, k), filters) if rows is None else rows
            return ranker._rank_rows(query, k, rows, aspect)
        if rows is None:
            rows = self.candidates(query, max(self.n_candidates, k), filters)
        return self._rank_rows(query, k, rows, aspect)

    def _rank_rows(self, query: QueryFeatures, k: int, rows: np.ndarray, aspect: Aspect) -> list[RelatedTrial]:
        if len(rows) == 0:
            return []
        signals = self.signals.compute(query, rows)
        brought: dict[int, str] = {}
        if isinstance(self.blend, CoveringBlend):
            components, order, brought = self.blend.cover(signals)
        else:
            components, order = self.blend.rank(signals)
        depth = getattr(self.blend, "depth", None)
        reranked = set(order[:depth].tolist()) if depth else set()
        duplicates: dict[int, list[int]] = {}
        if self.diversity is not None:
            # Looked at as for a stored list's length, so a shorter list is its first k items.
            reordered = self.diversity.reorder(self.index, rows, order, max(k, defaults.STORED_LIST_K))
            order, duplicates = reordered.order, reordered.duplicates
        fields = self.index.config.text_fields
        field_cols = [signals.names.index(f"field:{f}") for f in fields]
        out = []
        for i in order[:k]:
            trial = self.index.trials[rows[i]]
            parts = {g: float(v[i]) for g, v in components.items()}
            why = explain(query.trial, trial, parts, signals.values[i, field_cols], fields,
                          aspect=brought.get(int(i), aspect.value))
            if depth:
                why["stage"] = "rerank" if int(i) in reranked else "retrieve"
            if duplicates.get(int(i)):
                why["near_duplicates"] = [self.index.nct_id(rows[j]) for j in duplicates[int(i)]]
            out.append(
                RelatedTrial(
                    nct_id=trial.nct_id,
                    title=trial.title,
                    status=trial.overall_status.value if trial.overall_status else None,
                    phase=trial.phase,
                    score=float(sum(parts.values())),
                    why=why,
                )
            )
        return out
