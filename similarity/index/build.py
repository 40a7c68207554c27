"""Assembling an index: the one path from trials and their field vectors to a :class:`TrialIndex`.

:func:`build_index` embeds every trial and calls :func:`assemble`; :func:`~similarity.index.update.update_index`
embeds only what changed and calls the same :func:`assemble`, so a full build and an update give
the same index for the same trials (encoders, backend, neighbour lists, manifest).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Sequence

import numpy as np
from scipy import sparse

from .. import defaults
from ..exceptions import InvalidParameter
from ..features import (
    MULTI_VALUED_COLUMNS,
    STRUCTURED_COLUMNS,
    BM25Vectorizer,
    StructuredFeaturizer,
    concatenated_text,
    structured_table,
    text_table,
)
from ..ingest import Trial
from .backends import VectorBackend, make_backend
from .config import IndexConfig
from .manifest import Manifest, fingerprint, package_versions
from .neighbours import NeighbourLists, clustered_knn
from .quantized import store_field_vectors
from .trial_index import TrialIndex

__all__ = ["build_index", "build_with", "assemble", "embed_fields", "neighbour_lists", "EXACT_NEIGHBOURS_LIMIT"]

logger = logging.getLogger(__name__)

EXACT_NEIGHBOURS_LIMIT = 50_000
"""Lists are exact (the backend's own search) up to this many trials, clustered k-NN above."""


def neighbour_lists(backend: VectorBackend, vectors: np.ndarray, k: int, *, progress: bool = False) -> NeighbourLists:
    """Each stored vector's ``k`` nearest others: from the backend's own search up to
    :data:`EXACT_NEIGHBOURS_LIMIT` vectors (with an exact backend, the very rows a live search
    returns), from clustered all-pairs k-NN above (recall@10 ~0.99, minutes at a million)."""
    if len(vectors) > EXACT_NEIGHBOURS_LIMIT:
        return NeighbourLists(clustered_knn(vectors, k, n_probe=6, progress=progress), method="clustered")
    return NeighbourLists.compute(backend, vectors, k, progress=progress)


def check_unique(trials: Sequence[Trial], what: str = "trials") -> None:
    """Refuse duplicate NCT IDs (the loaders dedupe; a caller that did not gets a clear error)."""
    ids = [t.nct_id for t in trials]
    if len(set(ids)) != len(ids):
        raise InvalidParameter(f"{what} hold duplicate NCT IDs; load them with load_trials to dedupe")


def embed_fields(
    texts: np.ndarray, config: IndexConfig, *, cache_dir: str | None = None, progress: bool = False
) -> np.ndarray:
    """Field vectors ``(n, F, d)`` as float16 (as stored) of a text table ``(n, F)``; a ``None``
    cell (a missing field, or one the caller keeps) embeds as zeros."""
    featurizer = config.text_featurizer(cache_dir=cache_dir, progress=progress).fit(texts)
    return featurizer.transform(texts).reshape(len(texts), len(config.text_fields), featurizer.dim_).astype(np.float16)


def build_index(
    trials: Sequence[Trial],
    config: IndexConfig | None = None,
    *,
    cache_dir: str | None = None,
    progress: bool = False,
) -> TrialIndex:
    """Featurize ``trials`` and put them in a new in-memory index (save it with ``.save``)."""
    return build_with(
        lambda trials, config: embed_fields(text_table(trials, config.text_fields), config,
                                            cache_dir=cache_dir, progress=progress),
        trials, config, progress=progress)


def build_with(embed, trials: Sequence[Trial], config: IndexConfig | None = None, *,
               progress: bool = False, **manifest: Any) -> TrialIndex:
    """The one path of a build, whatever embeds: checks ``trials``, gets their field vectors from
    ``embed(trials, config)`` (here, or on a cluster: :mod:`.ray_build`) and assembles the index
    (:func:`assemble`)."""
    config = config or IndexConfig()
    if not trials:
        raise InvalidParameter("cannot build an index of zero trials")
    check_unique(trials)
    started = dt.datetime.now(dt.timezone.utc)
    return assemble(config, trials, embed(trials, config), started=started, progress=progress, **manifest)


def assemble(
    config: IndexConfig,
    trials: Sequence[Trial],
    field_vectors: np.ndarray,
    *,
    lexical: tuple[BM25Vectorizer, sparse.csr_matrix] | None = None,
    neighbours: int | None = None,
    started: dt.datetime | None = None,
    progress: bool = False,
    **manifest: Any,
) -> TrialIndex:
    """An index of ``trials`` from their stored field vectors: everything but the embedding.

    Fits the structured encoder (and BM25 unless ``lexical`` gives a fitted vectorizer and its
    matrix), fills a new backend with the weighted trial vectors, precomputes neighbour lists and
    writes the manifest.

    Args:
        config: the layout; ``field_vectors`` must follow it, shape ``(n, F, d)``.
        trials: the trials, row ``i`` of ``field_vectors`` being ``trials[i]``'s.
        lexical: a BM25 vectorizer already fitted on ``trials`` and their weight matrix.
        neighbours: length of the neighbour lists (default: ``config.neighbours``, where None
            means :data:`~similarity.defaults.NEIGHBOURS_K` above
            :data:`~similarity.defaults.NEIGHBOURS_MIN` trials and none below).
        started: when the work began (the manifest's ``built_at`` and ``build_seconds``).
        **manifest: further :class:`Manifest` fields (``blend``, ``updated_from``, ``update``).
    """
    started = started or dt.datetime.now(dt.timezone.utc)
    n = len(trials)
    structured_featurizer = StructuredFeaturizer(STRUCTURED_COLUMNS, MULTI_VALUED_COLUMNS)
    structured = structured_featurizer.fit_transform(structured_table(trials))
    if lexical is None:
        vectorizer = BM25Vectorizer()
        lexical = vectorizer, vectorizer.fit_transform([concatenated_text(t) for t in trials])
    field_vectors = store_field_vectors(field_vectors, config.vectors)
    backend = make_backend(config.backend, field_vectors.shape[2], n)
    index = TrialIndex(
        manifest=Manifest(
            config=config,
            dim=int(field_vectors.shape[2]),
            count=n,
            fingerprint=fingerprint(trials),
            backend=backend.name,
            structured_columns=tuple(STRUCTURED_COLUMNS),
            built_at=started.isoformat(timespec="seconds"),
            versions=package_versions(),
            **manifest,
        ),
        trials=trials,
        field_vectors=field_vectors,
        structured=structured,
        structured_featurizer=structured_featurizer,
        lexical=lexical[1],
        lexical_vectorizer=lexical[0],
        backend=backend,
    )
    # Stored vectors come from the stored field vectors (float16 or int8), like every query vector does.
    vectors = index.trial_vectors(field_vectors)
    backend.add(vectors, np.arange(n))
    k = config.neighbours if neighbours is None else neighbours
    if k is None:
        k = defaults.NEIGHBOURS_K if n > defaults.NEIGHBOURS_MIN else 0
    if k:
        backend.neighbours = neighbour_lists(backend, vectors, min(k, n - 1) or 1, progress=progress)
    index.manifest.neighbours = backend.neighbours.k if backend.neighbours is not None else 0
    index.manifest.build_seconds = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 2)
    return index
