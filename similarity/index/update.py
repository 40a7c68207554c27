"""Incremental index update: add new trials, re-embed changed ones, drop removed ones.

The registry changes daily, mostly a few hundred records at a time, while a full rebuild embeds
every trial again. :func:`update_index` gives the same index a full rebuild of the resulting
trials would give (same rows, vectors, encoders, hence the same related lists; only the row
order differs) at a fraction of the cost:

- a trial whose content hash is unchanged keeps its row; a changed trial re-embeds only the
  fields whose text changed, the others keep their stored vectors;
- structured attributes are refitted on all trials (cheap), and BM25 is refitted from term counts:
  the counts of unchanged trials are read back from the stored BM25 rows, only new texts are
  tokenised;
- the vector backend is rebuilt from stored vectors (no model needed), and precomputed neighbour
  lists, if the index has them, are recomputed.

Trials whose new record is withdrawn are removed like those named in ``remove``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse

from ..exceptions import InvalidParameter
from ..features import BM25Vectorizer, concatenated_text, text_table
from ..ingest import Status, Trial
from .build import assemble, check_unique, embed_fields
from .manifest import trial_hash
from .trial_index import TrialIndex

__all__ = ["UpdateReport", "update_index"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class UpdateReport:
    """What an update did."""

    added: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    unchanged: int = 0
    not_found: list[str] = dataclasses.field(default_factory=list)
    fields_embedded: int = 0
    fields_reused: int = 0
    lexical: str = "incremental"
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged; {self.fields_embedded} field texts embedded, "
            f"{self.fields_reused} field vectors reused"
        )

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("added", "changed", "removed", "not_found"):
            out[key] = len(out[key])
        return out


def _withdrawn(trial: Trial) -> bool:
    return trial.overall_status is Status.WITHDRAWN


def update_index(
    index: TrialIndex,
    trials: Sequence[Trial] = (),
    *,
    remove: Iterable[str] = (),
    cache_dir: str | None = None,
    progress: bool = False,
) -> tuple[TrialIndex, UpdateReport]:
    """A new in-memory index: ``index`` with ``trials`` added or replaced and ``remove`` dropped.

    Args:
        index: the current index (left unchanged).
        trials: new or changed trial records; unchanged ones cost a hash each.
        remove: NCT IDs to drop (IDs not in the index are reported in ``not_found``).
        cache_dir: embedding cache directory, or None.
        progress: show progress bars while embedding.

    Returns:
        The updated index (save it with ``.save``) and an :class:`UpdateReport`.
    """
    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    report = UpdateReport()
    check_unique(trials, "the update's trials")
    drop = {str(n).strip().upper() for n in remove}
    report.not_found = sorted(n for n in drop if n not in index)
    drop &= set(index.rows)
    incoming: dict[str, Trial] = {}
    for trial in trials:
        if _withdrawn(trial):
            if trial.nct_id in index:
                drop.add(trial.nct_id)
            continue
        if trial.nct_id in drop:
            continue
        if trial.nct_id in index and trial_hash(trial) == trial_hash(index.trial(trial.nct_id)):
            continue
        incoming[trial.nct_id] = trial
    report.removed = sorted(drop)

    # Final rows: kept old rows in their order (changed ones replaced in place), then new trials.
    old_trials = list(index.trials)  # one pass over the records (a loaded index reads them from disk)
    old_rows, final = [], []
    for row, trial in enumerate(old_trials):
        if trial.nct_id in drop:
            continue
        old_rows.append(row)
        final.append(incoming.pop(trial.nct_id, trial))
    changed_at = [i for i, (row, t) in enumerate(zip(old_rows, final)) if t is not old_trials[row]]
    report.changed = [final[i].nct_id for i in changed_at]
    report.added = list(incoming)
    final.extend(incoming.values())
    report.unchanged = len(old_rows) - len(changed_at)
    if not final:
        raise InvalidParameter("the update would leave the index empty")
    old_rows = np.asarray(old_rows, dtype=np.int64)

    field_vectors = _field_vectors(index, final, old_rows, changed_at, cache_dir, progress, report)
    fresh = sorted(set(changed_at) | set(range(len(old_rows), len(final))))
    lexical = _lexical(index, final, old_rows, fresh, report)
    old_lists = index.backend.neighbours
    new = assemble(
        index.config,
        final,
        field_vectors,
        lexical=lexical,
        neighbours=old_lists.k if old_lists is not None else 0,
        started=started,
        progress=progress,
        blend=index.manifest.blend,
        updated_from=index.fingerprint,
    )
    report.seconds = round(time.perf_counter() - clock, 2)
    new.manifest.build_seconds = report.seconds
    new.manifest.update = report.to_dict()
    return new, report


def _field_vectors(index, final, old_rows, changed_at, cache_dir, progress, report) -> np.ndarray:
    """Stored vectors for unchanged trials and fields; the model only for new or edited text."""
    config = index.config
    n_old, n_fields = len(old_rows), len(config.text_fields)
    dim = index.field_vectors.shape[2]
    out = np.empty((len(final), n_fields, dim), dtype=np.float16)
    for start in range(0, n_old, 50_000):  # in blocks: int8 vectors read back as float32
        stop = min(start + 50_000, n_old)
        out[start:stop] = index.field_vectors[old_rows[start:stop]]
    todo_rows = list(changed_at) + list(range(n_old, len(final)))
    if not todo_rows:
        report.fields_reused = n_old * n_fields
        return out
    texts = text_table([final[i] for i in todo_rows], config.text_fields)
    reuse = np.zeros(texts.shape, dtype=bool)
    n_changed = len(changed_at)
    if n_changed:
        before = text_table([index.trials[old_rows[i]] for i in changed_at], config.text_fields)
        reuse[:n_changed] = before == texts[:n_changed]
    report.fields_reused = (n_old - n_changed) * n_fields + int(reuse.sum())
    report.fields_embedded = int((~reuse & (texts != None)).sum())  # noqa: E711 - elementwise
    if report.fields_embedded:
        embedded = embed_fields(np.where(reuse, None, texts), config, cache_dir=cache_dir, progress=progress)
    else:
        embedded = np.zeros((len(todo_rows), n_fields, dim), dtype=np.float16)
    rows = np.asarray(todo_rows)
    out[rows] = np.where(reuse[:, :, None], out[rows], embedded)
    return out


def _lexical(index, final, old_rows, fresh, report) -> tuple[BM25Vectorizer, sparse.csr_matrix]:
    """BM25 refitted on the final trials, tokenising only the new and changed ones."""
    old = index.lexical_vectorizer
    cv = old.vectorizer_
    kept = np.setdiff1d(np.arange(len(old_rows)), fresh)
    counts_kept = old.counts_of(index.lexical[old_rows[kept]]) if len(kept) else None
    incremental = (
        (counts_kept is not None or not len(kept))
        and cv.min_df == 1
        and cv.max_df == 1.0
        and cv.max_features is None
        and getattr(cv, "ngram_range", (1, 1)) == (1, 1)
    )
    if not incremental:
        report.lexical = "refit"
        vectorizer = BM25Vectorizer(k1=old.k1, b=old.b, min_df=old.min_df, stop_words=old.stop_words)
        return vectorizer, vectorizer.fit_transform([concatenated_text(t) for t in final])

    analyzer = cv.build_analyzer()
    old_terms = np.empty(len(cv.vocabulary_), dtype=object)
    for term, j in cv.vocabulary_.items():
        old_terms[j] = term
    fresh_counts = [Counter(analyzer(concatenated_text(final[i]))) for i in fresh]
    present = set(old_terms[np.unique(counts_kept.indices)]) if len(kept) else set()
    for counter in fresh_counts:
        present.update(counter)
    vocabulary = {term: j for j, term in enumerate(sorted(present))}

    remap = np.array([vocabulary.get(t, -1) for t in old_terms], dtype=np.int64)
    rows, cols, vals = [], [], []
    if len(kept):
        coo = counts_kept.tocoo()
        rows.append(kept[coo.row])
        cols.append(remap[coo.col])
        vals.append(coo.data)
    for i, counter in zip(fresh, fresh_counts):
        rows.append(np.full(len(counter), i))
        cols.append(np.fromiter((vocabulary[t] for t in counter), np.int64, len(counter)))
        vals.append(np.fromiter(counter.values(), np.float32, len(counter)))
    counts = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(final), len(vocabulary)),
        dtype=np.float32,
    )
    counts.sort_indices()
    vectorizer = old.refit_counts(counts, vocabulary)
    return vectorizer, vectorizer.weigh(counts)
