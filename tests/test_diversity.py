"""Near-duplicate trials are spaced out or collapsed, never lost, and named in ``why``."""

import dataclasses

import numpy as np
import pytest

from similarity import InvalidParameter, Ranker, build_index
from similarity.ranking.diversity import Diversity, product_codes


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


def test_templated_titles_of_two_compounds_are_not_near_duplicates(sample_trials, tmp_path):
    """One sponsor's templated registrations: the same compound code is one programme, two codes are two."""
    base = next(t for t in sample_trials if t.conditions and t.brief_summary and t.lead_sponsor)
    title = "A Study of {} in Patients With Advanced Solid Tumors"
    family = [
        dataclasses.replace(base, nct_id="NCT99000011", brief_title=title.format("PF-06647263")),
        dataclasses.replace(base, nct_id="NCT99000012", brief_title=title.format("PF-06647263") + " (Extension)"),
        dataclasses.replace(base, nct_id="NCT99000013", brief_title=title.format("PF-06263507")),
    ]
    index = build_index(list(sample_trials[:20]) + family, cache_dir=str(tmp_path / "cache"))
    rows = np.array([index.row(t.nct_id) for t in family])
    dup = Diversity().near_duplicates(index, rows)
    assert dup[0, 1] and dup[1, 0]  # same compound: near-duplicates
    assert not dup[0, 2] and not dup[1, 2] and not dup[2, 0]  # another compound: not
    # without the codes the same texts are near-duplicates: the codes are what separates them
    plain = [dataclasses.replace(t, brief_title=title.format("the study drug")) for t in family]
    index = build_index(list(sample_trials[:20]) + plain, cache_dir=str(tmp_path / "cache"))
    assert Diversity().near_duplicates(index, np.array([index.row(t.nct_id) for t in plain]))[0, 2]


def test_product_codes():
    assert product_codes("A Study Of PF-06647263 In Patients") == {"PF06647263"}
    assert product_codes("Phase 3 Study of MK2461 and E7107") == {"MK2461", "E7107"}
    assert product_codes("Influenza Vaccine GSK1247446A") == {"GSK1247446"}
    assert product_codes("Type 2 Diabetes in Phase 3") == frozenset()
    assert product_codes(None) == frozenset()
