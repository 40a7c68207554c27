"""Micro-batching: the documents of concurrent requests embedded in one encoder call."""

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from similarity.features.batching import MicroBatcher


class SlowDouble:
    """Doubles its rows, taking ``seconds`` a call; records each call's row count."""

    def __init__(self, seconds=0.05, fail_on=None):
        self.seconds, self.fail_on, self.sizes = seconds, fail_on, []

    def __call__(self, rows):
        self.sizes.append(len(rows))
        time.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in rows[:, 0]:
            raise ValueError(f"bad row {self.fail_on}")
        return rows * 2


def _call_many(batcher, n, width=1):
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(batcher, np.full((width, 3), i)) for i in range(n)]
        return [f.result() for f in futures]


def test_concurrent_callers_share_calls_and_each_gets_its_own_rows():
    fn = SlowDouble()
    batcher = MicroBatcher(fn)
    results = _call_many(batcher, 12, width=2)
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, np.full((2, 3), 2 * i))
    assert sum(fn.sizes) == 24
    assert len(fn.sizes) < 12 and batcher.calls == len(fn.sizes)  # the callers who waited went together


def test_a_lone_call_is_not_delayed():
    batcher = MicroBatcher(SlowDouble(seconds=0.0))
    batcher(np.zeros((1, 3)))  # the worker thread is started
    started = time.perf_counter()
    batcher(np.ones((1, 3)))
    assert time.perf_counter() - started < 0.05


def test_a_batch_holds_at_most_max_rows_beyond_its_first_job():
    fn = SlowDouble()
    batcher = MicroBatcher(fn, max_rows=4)
    _call_many(batcher, 16)
    assert max(fn.sizes) <= 4 and sum(fn.sizes) == 16


def test_an_error_reaches_the_callers_of_its_batch_and_the_batcher_goes_on():
    fn = SlowDouble(fail_on=3)
    batcher = MicroBatcher(fn)
    outcomes = []
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher, np.full((1, 3), i)) for i in range(6)]
        for f in futures:
            try:
                outcomes.append(f.result())
            except ValueError as exc:
                outcomes.append(exc)
    assert any(isinstance(o, ValueError) and "bad row 3" in str(o) for o in outcomes)
    np.testing.assert_array_equal(batcher(np.full((1, 3), 7)), np.full((1, 3), 14))


def test_the_worker_ends_when_idle_and_starts_again():
    batcher = MicroBatcher(SlowDouble(seconds=0.0), idle_s=0.05)
    batcher(np.zeros((1, 3)))
    deadline = time.time() + 2
    while batcher._worker is not None and time.time() < deadline:
        time.sleep(0.01)
    assert batcher._worker is None
    np.testing.assert_array_equal(batcher(np.ones((1, 3))), np.full((1, 3), 2))


def test_max_rows_must_be_positive():
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        MicroBatcher(lambda rows: rows, max_rows=0)


@pytest.mark.slow
def test_a_batching_ranker_ranks_new_documents_as_one_that_does_not(index, sample_trials):
    from similarity import Ranker

    plain, batching = Ranker(index), Ranker(index)
    batching.batch_documents()
    documents = [dataclasses.replace(t, nct_id=f"NCT9{i:07d}") for i, t in enumerate(sample_trials[:8])]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda d: batching.related_to_trial(d, k=5), documents))
    assert batching._embed.calls < len(documents)
    for document, got in zip(documents, together):
        alone = plain.related_to_trial(document, k=5)
        assert [r.nct_id for r in got] == [r.nct_id for r in alone]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in alone], atol=1e-3)


def test_serve_refuses_a_batch_size_below_one(capsys, index_dir):
    from similarity.cli import main

    code = main(["serve", "--index", str(index_dir), "--batch-rows", "0"])
    assert code != 0 and "--batch-rows must be >= 1, got 0" in capsys.readouterr().err


def test_the_app_refuses_a_batch_size_below_one(index_dir):
    from similarity.exceptions import InvalidParameter
    from similarity.service import create_app

    with pytest.raises(InvalidParameter, match="batch_rows must be >= 1, got 0"):
        create_app(index_dir, batch_rows=0)


def test_a_served_index_embeds_posted_documents_in_batches(index_dir):
    from similarity.service.hotswap import ServedIndex

    served = ServedIndex(index_dir, load_model=False, batch_rows=32)
    served.reload()
    assert served.ranker._embed is not None and served.ranker._embed.max_rows == 32
    alone = ServedIndex(index_dir, load_model=False)  # the default: each document alone
    alone.reload()
    assert alone.ranker._embed is None


def test_a_few_texts_are_cut_into_runs_of_similar_length():
    from similarity.features.text import _length_groups

    texts = sorted(["a" * n for n in (3, 5, 8, 30, 31, 40, 300, 310, 320, 330)], key=len)
    groups = _length_groups(texts, most=3)
    assert [t for g in groups for t in g] == texts  # every text once, in order
    assert all(len(g) <= 3 for g in groups)
    assert all(len(g[-1]) <= 1.5 * len(g[0]) + 20 for g in groups)
    assert [len(g) for g in groups] == [3, 3, 3, 1]


@pytest.mark.slow
def test_length_grouped_vectors_are_those_of_one_text_at_a_time():
    from similarity import TextFeaturizer

    texts = ["Melanoma", "Systemic Scleroderma", "autologous mesenchymal stem cells",
             "A Phase II Study of Ipilimumab in Patients With Metastatic Melanoma " * 4]
    featurizer = TextFeaturizer().fit(np.empty((1, 1), dtype=object))
    grouped = featurizer.encode_texts(texts)
    alone = np.vstack([featurizer.model_.encode([t], normalize_embeddings=True) for t in texts])
    np.testing.assert_allclose(grouped, alone, atol=1e-5)


def test_each_serving_worker_runs_torch_on_one_thread(index_dir, monkeypatch):
    import json

    import torch

    from similarity.service import server

    monkeypatch.setenv(server.CONFIG_ENV, json.dumps({"index_dir": str(index_dir)}))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        server.app_from_environment()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
