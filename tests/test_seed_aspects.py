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
    assert items[0].why["summary"] == "similar interventions: autologous mesenchymal stem cells (same kind: cell)"
    assert items[0].why["aspect"] == "intervention"


def test_both_cell_therapy_trials_are_in_the_intervention_list(corpus_ranker):
    # The registry's two cross-disease relations of the seed: the stem cells in multiple system
    # atrophy and the RAPA-501 T cells in ALS. The T cells share no intervention word with the seed's
    # stem cells but their kind, "cell" (the head noun of both names).
    items = corpus_ranker.related(SEED, 10, aspect="intervention")
    ids = [r.nct_id for r in items]
    assert MSC_MSA in ids and RAPA_ALS in ids
    rapa = items[ids.index(RAPA_ALS)]
    assert rapa.why["shared"]["intervention_kinds"] == ["cell"]
    assert rapa.why["summary"].startswith("similar interventions: RAPA-501 Autologous T cells (same kind: cell)")
    # the overall list's candidates come from the whole text, where ALS is far from scleroderma
    overall = [r.nct_id for r in corpus_ranker.related(SEED, 300)]
    assert RAPA_ALS not in overall


def test_the_condition_list_stays_with_scleroderma(corpus_ranker):
    items = corpus_ranker.related(SEED, 5, aspect="condition")
    assert all("Scleroderma" in (" ".join(corpus_ranker.index.trial(i.nct_id).condition_mesh or ())) for i in items)
    assert MSC_MSA not in [i.nct_id for i in items]


def test_the_overall_list_holds_the_stem_cell_trial_and_names_the_intervention(corpus_ranker):
    # The shipped overall list (the fusion): the stem-cell trial in another disease is in its
    # first 10, and its why names the shared kind of intervention.
    items = corpus_ranker.related(SEED, 10)
    ids = [i.nct_id for i in items]
    assert MSC_MSA in ids
    assert "mesenchymal stem cells" in items[ids.index(MSC_MSA)].why["summary"]


def test_with_coverage_the_head_shows_the_intervention_neighbour(corpus_ranker):
    # fit-weights --coverage 0.25: the overall list's head covers the condition and intervention
    # aspects; the stem-cell trial in another disease comes up, brought by the intervention aspect.
    from similarity.ranking.coverage import CoveringBlend

    covering = corpus_ranker.with_blend(CoveringBlend(corpus_ranker.blend, 0.25), stored=False)
    items = covering.related(SEED, 10)
    ids = [i.nct_id for i in items]
    plain = [i.nct_id for i in corpus_ranker.related(SEED, 10)]
    assert MSC_MSA in ids and ids.index(MSC_MSA) < plain.index(MSC_MSA)
    msc = items[ids.index(MSC_MSA)]
    assert msc.why["aspect"] == "intervention"
    assert msc.why["summary"].startswith("similar interventions: autologous mesenchymal stem cells")
    assert {i.why.get("aspect") for i in items} <= {None, "condition", "intervention"}
