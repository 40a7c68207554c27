"""Near-duplicate trials are spaced out or collapsed, never lost, and named in ``why``."""

import dataclasses

import numpy as np
import pytest

from similarity import InvalidParameter, Ranker, build_index
from similarity.diversity import Diversity


@pytest.fixture(scope="module")
def dup_index(sample_trials, tmp_path_factory):
    """The sample trials plus two re-registrations of one trial (same text, other NCT IDs)."""
    base = next(t for t in sample_trials if t.conditions and t.brief_summary)
    clones = [dataclasses.replace(base, nct_id=f"NCT9900000{i}") for i in (1, 2)]
    return base, build_index(list(sample_trials) + clones, cache_dir=str(tmp_path_factory.mktemp("cache")))


def query_ranking_the_family_high(ranker, base):
    for trial in ranker.index.trials:
        if trial.nct_id in (base.nct_id, "NCT99000001", "NCT99000002"):
            continue
        ids = [r.nct_id for r in ranker.related(trial.nct_id, 5)]
        if sum(i in ids for i in (base.nct_id, "NCT99000001", "NCT99000002")) >= 2:
            return trial.nct_id
    pytest.skip("no query lists two of the family in its top 5")


def test_near_duplicates_are_detected(dup_index):
    base, index = dup_index
    rows = np.array([index.row(base.nct_id), index.row("NCT99000001"), index.row("NCT99000002"), 0])
    dup = Diversity().near_duplicates(index, rows)
    assert dup[0, 1] and dup[1, 2] and dup[0, 2]
    assert not dup[np.arange(4), np.arange(4)].any()


@pytest.mark.parametrize("mode", ["space", "collapse"])
def test_family_shows_once_in_the_top_k(dup_index, mode):
    base, index = dup_index
    family = {base.nct_id, "NCT99000001", "NCT99000002"}
    plain = Ranker(index, diversity=None)
    query = query_ranking_the_family_high(plain, base)
    diverse = plain.with_blend(diversity=Diversity(mode=mode))
    top = diverse.related(query, 5)
    shown = [r for r in top if r.nct_id in family]
    assert len(shown) == 1
    assert set(shown[0].why["near_duplicates"]) | {shown[0].nct_id} <= family
    assert len(shown[0].why["near_duplicates"]) >= 1
    everything = [r.nct_id for r in diverse.related(query, len(index) - 1)]
    if mode == "space":  # moved below the top k, not dropped
        assert family - {query} <= set(everything)
        assert len(everything) == len(index) - 1
    else:
        assert not set(shown[0].why["near_duplicates"]) & set(everything)
    # scores stay the blend's scores; the set outside the family is the plain list's next ones
    plain_ids = [r.nct_id for r in plain.related(query, 10) if r.nct_id not in family]
    assert [r.nct_id for r in top if r.nct_id not in family] == plain_ids[:4]


def test_diversity_parameters_are_checked():
    with pytest.raises(InvalidParameter):
        Diversity(threshold=1.5)
    with pytest.raises(InvalidParameter):
        Diversity(max_per_group=0)
    with pytest.raises(InvalidParameter):
        Diversity(mode="drop")
