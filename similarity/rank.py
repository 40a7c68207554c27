"""The ranker: FAISS candidates re-scored by a documented blend of semantic, structured and lexical.

For a query trial ``q`` and a candidate ``c``:

- ``semantic`` = weighted mean over the text fields both trials have of ``cos(q_f, c_f)``
  (field weights in ``BlendWeights.fields``);
- ``structured`` = weighted mean over the attributes both trials have of their agreement: Jaccard
  overlap of the encoded values (MeSH terms, conditions, intervention names and types, status,
  study type, purpose...), and for phase ``1 - |distance| / 3`` on the development path;
- ``lexical`` = BM25 of ``q``'s terms in ``c``, divided by BM25 of ``q`` in itself (so in [0, ~1]);
- ``score = semantic_w * semantic + structured_w * structured + lexical_w * lexical``.

``why.components`` holds the three weighted terms, which add up to ``score``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import sparse

from .exceptions import InvalidParameter
from .fields import STRUCTURED_COLUMNS, attribute_sets, concatenated_text, structured_table, text_table
from .index import TrialIndex
from .trial import InterventionType, Phase, Status, StudyType, Trial, parse_phases

__all__ = ["BlendWeights", "Filters", "RelatedTrial", "Ranker", "QueryFeatures"]

_SHARED = (
    ("conditions", "conditions"),
    ("condition_mesh", "condition_mesh"),
    ("interventions", "intervention_names"),
    ("intervention_mesh", "intervention_mesh"),
)


def _frozen_map(values: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple((str(k), float(v)) for k, v in dict(values).items())


@dataclasses.dataclass(frozen=True)
class BlendWeights:
    """Weights of the blend; signals and their inner weights are described in the module doc."""

    semantic: float = 0.55
    structured: float = 0.2
    lexical: float = 0.25
    fields: tuple[tuple[str, float], ...] = (
        ("title", 1.0),
        ("conditions", 1.0),
        ("interventions", 0.5),
        ("summary", 1.0),
        ("description", 0.5),
        ("criteria", 0.5),
        ("outcomes", 0.5),
    )
    attributes: tuple[tuple[str, float], ...] = (
        ("condition_mesh", 2.0),
        ("conditions", 1.0),
        ("intervention_mesh", 1.0),
        ("intervention_names", 1.0),
        ("intervention_types", 0.5),
        ("phase", 0.5),
        ("study_type", 0.5),
        ("primary_purpose", 0.5),
        ("allocation", 0.1),
        ("status", 0.1),
        ("sponsor_class", 0.1),
    )

    def __post_init__(self):
        for name in ("fields", "attributes"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _frozen_map(value))
        if min(self.semantic, self.structured, self.lexical) < 0:
            raise InvalidParameter(f"blend weights must be >= 0, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "semantic": self.semantic,
            "structured": self.structured,
            "lexical": self.lexical,
            "fields": dict(self.fields),
            "attributes": dict(self.attributes),
        }


def _parse_all(parser, values: Iterable[str] | None) -> tuple:
    return tuple(dict.fromkeys(parser(v) for v in values or ()))


@dataclasses.dataclass(frozen=True)
class Filters:
    """Keep only trials matching every given attribute (any of its values). Empty = no filter."""

    status: tuple[Status, ...] = ()
    phase: tuple[Phase, ...] = ()
    intervention_type: tuple[InterventionType, ...] = ()
    study_type: tuple[StudyType, ...] = ()

    @classmethod
    def parse(cls, *, status=None, phase=None, intervention_type=None, study_type=None) -> "Filters":
        """Build from strings in either registry spelling; raises InvalidParameter on unknown ones."""
        return cls(
            status=_parse_all(Status.parse, status),
            phase=tuple(dict.fromkeys(p for v in phase or () for p in parse_phases(v) or ())),
            intervention_type=_parse_all(InterventionType.parse, intervention_type),
            study_type=_parse_all(StudyType.parse, study_type),
        )

    def __bool__(self) -> bool:
        return bool(self.status or self.phase or self.intervention_type or self.study_type)

    def matches(self, trial: Trial) -> bool:
        if self.status and trial.overall_status not in self.status:
            return False
        if self.phase and not set(trial.phases or ()) & set(self.phase):
            return False
        if self.intervention_type and not set(trial.intervention_types or ()) & set(self.intervention_type):
            return False
        if self.study_type and trial.study_type not in self.study_type:
            return False
        return True


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


@dataclasses.dataclass
class QueryFeatures:
    """Everything the blend needs from the query side."""

    trial: Trial
    row: int | None
    field_vectors: np.ndarray  # (F, d)
    trial_vector: np.ndarray  # (d,)
    structured: sparse.csr_matrix  # (1, m)
    lexical: sparse.csr_matrix  # (1, V) binary term presence
    lexical_self: float


class Ranker:
    """Related lists from a :class:`TrialIndex`.

    Args:
        index: the loaded index.
        weights: blend weights (default: the index manifest's, else :class:`BlendWeights`()).
        n_candidates: trials fetched from the vector backend before the blend re-scores them.
    """

    def __init__(self, index: TrialIndex, weights: BlendWeights | None = None, n_candidates: int = 300):
        if n_candidates < 1:
            raise InvalidParameter(f"n_candidates must be >= 1, got {n_candidates}")
        self.index = index
        if weights is None and "blend" in index.manifest:
            weights = BlendWeights(**index.manifest["blend"])
        self.weights = weights or BlendWeights()
        self.n_candidates = n_candidates
        fields = dict(self.weights.fields)
        self._field_w = np.array([fields.get(f, 0.0) for f in index.config.text_fields], dtype=np.float32)
        attrs = dict(self.weights.attributes)
        self._blocks = [
            (name, index.structured_featurizer.blocks_[name], attrs.get(name, 0.0))
            for name in STRUCTURED_COLUMNS
            if name in index.structured_featurizer.blocks_ and name != "phase" and attrs.get(name, 0.0) > 0
        ]
        self._phase_w = attrs.get("phase", 0.0)
        self._phase_ord = np.array([_phase_ordinal(t) for t in index.trials], dtype=np.float32)
        self._masks: dict[tuple[str, str], np.ndarray] = {}

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
        )

    def features_of_trial(self, trial: Trial) -> QueryFeatures:
        """Query features of a trial document that is not in the index (loads the model)."""
        featurizer = self.index.text_featurizer()
        texts = text_table([trial], self.index.config.text_fields)
        fv = featurizer.transform(texts).reshape(len(self.index.config.text_fields), featurizer.dim_)
        text = concatenated_text(trial)
        vectorizer = self.index.lexical_vectorizer
        lexical = vectorizer.query_transform([text])
        return QueryFeatures(
            trial=trial,
            row=None,
            field_vectors=fv,
            trial_vector=self.index.trial_vectors(fv[None])[0],
            structured=self.index.structured_featurizer.transform(structured_table([trial])),
            lexical=lexical,
            lexical_self=float((lexical @ vectorizer.transform([text]).T).toarray()[0, 0]),
        )

    # -------------------------------------------------------------- scoring
    def score(self, query: QueryFeatures, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Blend components of ``rows`` against ``query``: ``semantic``, ``structured``,
        ``lexical`` (unweighted, in [0, 1]), ``fields`` (rows x F cosines, NaN where missing)
        and ``score`` (the weighted sum)."""
        rows = np.asarray(rows, dtype=np.int64)
        cand = np.asarray(self.index.field_vectors[rows], dtype=np.float32)  # (n, F, d)
        cos = np.einsum("nfd,fd->nf", cand, query.field_vectors)
        present = (np.abs(cand).sum(axis=2) > 0) & (np.abs(query.field_vectors).sum(axis=1) > 0)[None]
        w = present * self._field_w[None]
        semantic = np.where(w.sum(1) > 0, (cos * w).sum(1) / np.maximum(w.sum(1), 1e-12), 0.0)

        num = np.zeros(len(rows), dtype=np.float64)
        den = np.zeros(len(rows), dtype=np.float64)
        cand_struct = self.index.structured[rows]
        for _, block, weight in self._blocks:
            q = query.structured[:, block]
            if q.nnz == 0:
                continue
            c = cand_struct[:, block]
            inter = np.asarray((c @ q.T).toarray()).ravel()
            c_size = np.diff(c.indptr)
            union = c_size + q.nnz - inter
            has = c_size > 0
            num += np.where(has, weight * inter / np.maximum(union, 1), 0.0)
            den += np.where(has, weight, 0.0)
        q_phase = _phase_ordinal(query.trial)
        if self._phase_w > 0 and not np.isnan(q_phase):
            c_phase = self._phase_ord[rows]
            has = ~np.isnan(c_phase)
            c_phase = np.nan_to_num(c_phase)
            # N/A (non-drug trials, ordinal -1) only agrees with N/A; phases agree by distance.
            close = np.where(
                (c_phase >= 0) & (q_phase >= 0),
                1 - np.minimum(np.abs(c_phase - q_phase), 3) / 3,
                ((c_phase < 0) & (q_phase < 0)).astype(float),
            )
            num += np.where(has, self._phase_w * close, 0.0)
            den += np.where(has, self._phase_w, 0.0)
        structured = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)

        bm25 = np.asarray((self.index.lexical[rows] @ query.lexical.T).toarray()).ravel()
        lexical = np.minimum(bm25 / max(query.lexical_self, 1e-12), 1.0)

        wt = self.weights
        parts = {
            "semantic": wt.semantic * semantic,
            "structured": wt.structured * structured,
            "lexical": wt.lexical * lexical,
        }
        return {
            "semantic": semantic,
            "structured": structured,
            "lexical": lexical,
            "fields": np.where(present, cos, np.nan),
            "weighted": parts,
            "score": parts["semantic"] + parts["structured"] + parts["lexical"],
        }

    # -------------------------------------------------------------- related lists
    def allowed_rows(self, filters: Filters | None) -> np.ndarray | None:
        """Rows matching ``filters`` (``None`` when there is no filter)."""
        if not filters:
            return None
        keep = np.ones(len(self.index), dtype=bool)
        for name, values in dataclasses.asdict(filters).items():
            if values:
                keep &= np.logical_or.reduce([self._mask(name, v) for v in values])
        return np.flatnonzero(keep)

    def _mask(self, name: str, value) -> np.ndarray:
        key = (name, value.value)
        if key not in self._masks:
            probe = Filters(**{name: (value,)})
            self._masks[key] = np.fromiter((probe.matches(t) for t in self.index.trials), bool, len(self.index))
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

    def related(self, nct_id: str, k: int = 10, *, filters: Filters | None = None) -> list[RelatedTrial]:
        """The ``k`` trials most related to indexed trial ``nct_id`` (raises TrialNotFound)."""
        return self._related(self.features(nct_id), k, filters)

    def related_to_trial(self, trial: Trial, k: int = 10, *, filters: Filters | None = None) -> list[RelatedTrial]:
        """The ``k`` indexed trials most related to a trial document (indexed or not)."""
        if trial.nct_id in self.index and self.index.trial(trial.nct_id) == trial:
            return self.related(trial.nct_id, k, filters=filters)
        query = self.features_of_trial(trial)
        if trial.nct_id in self.index:  # a newer version of an indexed trial: never list itself
            query.row = self.index.row(trial.nct_id)
        return self._related(query, k, filters)

    def _related(self, query: QueryFeatures, k: int, filters: Filters | None) -> list[RelatedTrial]:
        if k < 1:
            raise InvalidParameter(f"k must be >= 1, got {k}")
        rows = self.candidates(query, max(self.n_candidates, k), filters)
        if len(rows) == 0:
            return []
        scored = self.score(query, rows)
        order = np.argsort(-scored["score"], kind="stable")[:k]
        return [self._entry(query, rows[i], scored, i) for i in order]

    def _entry(self, query: QueryFeatures, row: int, scored: dict, i: int) -> RelatedTrial:
        trial = self.index.trials[row]
        parts = {name: float(v[i]) for name, v in scored["weighted"].items()}
        return RelatedTrial(
            nct_id=trial.nct_id,
            title=trial.title,
            status=trial.overall_status.value if trial.overall_status else None,
            phase=trial.phase,
            score=float(sum(parts.values())),
            why=explain(query.trial, trial, parts, scored["fields"][i], self.index.config.text_fields),
        )


def _phase_ordinal(trial: Trial) -> float:
    ords = [p.ordinal for p in trial.phases or () if p.ordinal is not None]
    if ords:
        return float(np.mean(ords))
    return -1.0 if trial.phases and Phase.NA in trial.phases else float("nan")


def _phase_relation(q: Trial, c: Trial) -> str:
    if not q.phases or not c.phases:
        return "unknown"
    if set(q.phases) == set(c.phases):
        return "same"
    if set(q.phases) & set(c.phases):
        return "overlapping"
    qo, co = _phase_ordinal(q), _phase_ordinal(c)
    if Phase.NA in q.phases or Phase.NA in c.phases:
        return "different"
    return "earlier" if co < qo else "later"


def _shared(q_values: Sequence[str] | None, c_values: Sequence[str] | None) -> list[str]:
    q_norm = {" ".join(v.lower().split()) for v in q_values or ()}
    out = []
    for v in c_values or ():
        if " ".join(v.lower().split()) in q_norm and v not in out:
            out.append(v)
    return out


def explain(query: Trial, cand: Trial, components: dict[str, float], field_cos, fields) -> dict[str, Any]:
    """Why ``cand`` is related to ``query``: facts present in both, and the score components."""
    shared = {
        "conditions": _shared(query.conditions, cand.conditions),
        "condition_mesh": _shared(query.condition_mesh, cand.condition_mesh),
        "interventions": _shared(query.intervention_names, cand.intervention_names),
        "intervention_mesh": _shared(query.intervention_mesh, cand.intervention_mesh),
        "intervention_types": [t.value for t in cand.intervention_types or () if t in (query.intervention_types or ())],
    }
    q_status = query.overall_status.value if query.overall_status else None
    c_status = cand.overall_status.value if cand.overall_status else None
    phase = {"query": query.phase, "candidate": cand.phase, "relation": _phase_relation(query, cand)}
    status = {
        "query": q_status,
        "candidate": c_status,
        "relation": "unknown" if not (q_status and c_status) else ("same" if q_status == c_status else "different"),
    }
    reasons = []
    topics = list(dict.fromkeys(shared["conditions"] + shared["condition_mesh"]))[:3]
    if topics:
        reasons.append("Same condition: " + ", ".join(topics))
    drugs = list(dict.fromkeys(shared["interventions"] + shared["intervention_mesh"]))[:2]
    if drugs:
        reasons.append("same intervention: " + ", ".join(drugs))
    if phase["relation"] == "same":
        reasons.append(f"same phase ({cand.phase})")
    if not reasons:
        best = [f for f, c in zip(fields, field_cos) if not np.isnan(c)]
        best = max(best, key=lambda f: field_cos[list(fields).index(f)]) if best else None
        reasons.append(f"similar {best}" if best else "similar text")
    return {
        "shared": shared,
        "phase": phase,
        "status": status,
        "fields": {f: (None if np.isnan(c) else round(float(c), 4)) for f, c in zip(fields, field_cos)},
        "components": components,
        "summary": "; ".join(reasons)[:200],
    }
