"""The seed page's cross-disease relations: NCT02213705 (allogeneic mesenchymal stem cells in
systemic sclerosis) with the 7,003-trial corpus and the two seed-page trials indexed.

The registry lists NCT02315027 (autologous mesenchymal stem cells in multiple system atrophy) and
NCT04220190 (RAPA-501 T cells in ALS) as related to the seed, by the intervention across
diseases. The index here is a ``--fast`` build (brief title, conditions, interventions: the
intervention aspect's own signals are those of a default build) so that the corpus embeds in a
few minutes on CI's two cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
SEED = "NCT02213705"
MSC_MSA, RAPA_ALS = "NCT02315027", "NCT04220190"


@pytest.fixture(scope="module")
def corpus_ranker(tmp_path_factory):
    from similarity import IndexConfig, Ranker, build_index, load_trials
    from similarity.features import FAST_TEXT_FIELDS

    trials = load_trials([ROOT / "data" / "ctgov-legacy-xml-sample.zip", ROOT / "data" / "seed" / "NCT02213705.json",
                          ROOT / "data" / "seed" / "seed-page-related.jsonl"])
    assert len(trials) >= 7_003 + 3
    config = IndexConfig(text_fields=tuple(f.value for f in FAST_TEXT_FIELDS))
    cache = tmp_path_factory.mktemp("cache")
    return Ranker(build_index(trials, config, cache_dir=str(cache)))


def test_the_stem_cell_trial_in_another_disease_leads_the_intervention_list(corpus_ranker):
    items = corpus_ranker.related(SEED, 10, aspect="intervention")
    assert items[0].nct_id == MSC_MSA
    assert items[0].why["summary"] == "similar interventions: autologous mesenchymal stem cells"
    assert items[0].why["aspect"] == "intervention"


def test_the_t_cell_trial_is_a_candidate_of_the_intervention_list_only(corpus_ranker):
    # Where it lands, recorded: the intervention aspect reaches it (30th on the default build),
    # the overall list does not have it in its first 300 candidates.
    by_intervention = [r.nct_id for r in corpus_ranker.related(SEED, 100, aspect="intervention")]
    assert RAPA_ALS in by_intervention[:60]
    overall = [r.nct_id for r in corpus_ranker.related(SEED, 300)]
    assert RAPA_ALS not in overall


def test_the_condition_list_stays_with_scleroderma(corpus_ranker):
    items = corpus_ranker.related(SEED, 5, aspect="condition")
    assert all("Scleroderma" in (" ".join(corpus_ranker.index.trial(i.nct_id).condition_mesh or ())) for i in items)
    assert MSC_MSA not in [i.nct_id for i in items]
