"""Precomputed neighbour lists: exact ones match a live search, clustered ones nearly so."""

import numpy as np
import pytest

from similarity import IndexConfig, Ranker, build_index
from similarity.index._files import NpyRows
from similarity.index.backends import NumpyBackend
from similarity.index.neighbours import NeighbourLists, clustered_knn, exact_knn


def _clustered_unit(rng, n, d, centres=40, noise=0.3):
    base = rng.normal(size=(centres, d))
    x = base[rng.integers(0, centres, n)] + noise * rng.normal(size=(n, d))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors():
    return _clustered_unit(np.random.default_rng(3), 4000, 24)


def _oracle(vectors, k):
    backend = NumpyBackend(vectors.shape[1])
    backend.add(vectors, np.arange(len(vectors)))
    return NeighbourLists.compute(backend, vectors, k).ids


def test_exact_knn_matches_the_oracle(vectors):
    got, want = exact_knn(vectors, 10, block=700), _oracle(vectors, 10)
    score = lambda ids: np.einsum("nd,nkd->nk", vectors, vectors[ids])  # noqa: E731
    # equal up to the order of near-ties (BLAS and NumPy round differently)
    np.testing.assert_allclose(score(got), score(want), atol=1e-5)
    assert np.mean(got == want) > 0.99


def test_clustered_knn_recall(vectors):
    got = clustered_knn(vectors, 10, n_lists=20, n_probe=6)
    want = _oracle(vectors, 10)
    assert not np.any(got == np.arange(len(vectors))[:, None]), "a row is never its own neighbour"
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.95


def test_rows_drop_padding_and_refuse_more_than_stored():
    lists = NeighbourLists(np.array([[2, 1, -1], [0, 2, -1], [1, 0, -1]], dtype=np.int32))
    assert lists.rows(0, 3).tolist() == [2, 1]
    with pytest.raises(ValueError, match="only 3 neighbours"):
        lists.rows(0, 4)


def test_saved_lists_are_read_a_list_at_a_time_and_save_again(tmp_path):
    ids = np.array([[2, 1, -1], [0, 2, -1], [1, 0, -1]], dtype=np.int32)
    NeighbourLists(ids, method="exact").save(tmp_path)
    served = NeighbourLists.load(tmp_path)
    assert isinstance(served.ids, NpyRows) and served.method == "exact"
    assert [served.rows(r, 3).tolist() for r in range(3)] == [[2, 1], [0, 2], [1, 0]]
    (tmp_path / "again").mkdir()
    served.save(tmp_path / "again")
    assert np.array_equal(NeighbourLists.load(tmp_path / "again", mmap=False).ids, ids)


@pytest.mark.slow
def test_precomputed_related_lists_equal_the_search_path(sample_trials, tmp_path):
    index = build_index(sample_trials, IndexConfig(neighbours=30), cache_dir=str(tmp_path))
    assert index.backend.neighbours.k == 30 and index.manifest.neighbours == 30
    fast = Ranker(index, n_candidates=20)
    slow = Ranker(index, n_candidates=20)
    slow_index_backend = index.backend.neighbours
    for trial in sample_trials[::4]:
        got = fast.related(trial.nct_id, 10)
        index.backend.neighbours = None  # the search path
        want = slow.related(trial.nct_id, 10)
        index.backend.neighbours = slow_index_backend
        assert [r.to_dict() for r in got] == [r.to_dict() for r in want]
    # beyond the stored lists, and with filters, the search path answers
    assert len(Ranker(index, n_candidates=50).related(sample_trials[0].nct_id, 5)) == 5
