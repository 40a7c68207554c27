import pytest

from similarity import BlendWeights, Filters, InvalidParameter, Phase, Ranker, Status, TrialNotFound


def test_related_excludes_the_trial_itself_and_is_sorted(ranker, index):
    for trial in index.trials[:15]:
        related = ranker.related(trial.nct_id, 10)
        ids = [r.nct_id for r in related]
        assert trial.nct_id not in ids
        assert len(ids) == len(set(ids)) == min(10, len(index) - 1)
        # Sorted by score, except where aspect coverage brought a trial ahead: it says which aspect.
        for above, below in zip(related, related[1:]):
            assert above.score >= below.score or above.why.get("aspect") in ("condition", "intervention")
        base = getattr(ranker.blend, "base", ranker.blend)
        plain = ranker.with_blend(base, stored=False).related(trial.nct_id, 10)
        assert [r.score for r in plain] == sorted((r.score for r in plain), reverse=True)


def test_unknown_trial(ranker):
    with pytest.raises(TrialNotFound):
        ranker.related("NCT99999999")


def test_components_add_up_to_the_score(ranker, index):
    for r in ranker.related(index.trials[0].nct_id, 10):
        assert sum(r.why["components"].values()) == pytest.approx(r.score, abs=1e-9)
        assert set(r.why["components"]) == {"semantic", "structured", "lexical"}


def test_why_names_only_facts_present_in_both_trials(ranker, index):
    def norm(values):
        return {" ".join(v.lower().split()) for v in values or ()}

    checked = 0
    for query in index.trials:
        for r in ranker.related(query.nct_id, 5):
            cand = index.trial(r.nct_id)
            shared = r.why["shared"]
            for key, getter in [
                ("conditions", lambda t: t.conditions),
                ("condition_mesh", lambda t: t.condition_mesh),
                ("interventions", lambda t: t.intervention_names),
                ("intervention_mesh", lambda t: t.intervention_mesh),
            ]:
                assert norm(shared[key]) <= norm(getter(query)) & norm(getter(cand))
                checked += len(shared[key])
            assert r.why["phase"]["query"] == query.phase and r.why["phase"]["candidate"] == cand.phase
            assert r.why["status"]["candidate"] == r.status
    assert checked > 0, "the sample should share at least some facts"


def test_a_similar_list_field_names_the_candidates_terms():
    import numpy as np

    from similarity.ingest import Intervention, Trial
    from similarity.ranking.explain import explain

    query = Trial("NCT00000001", conditions=("Systemic Scleroderma",),
                  interventions=(Intervention(None, "Allogeneic Mesenchymal Stem Cells"),))
    cand = Trial("NCT00000002", conditions=("MSA",), interventions=(
        Intervention(None, "autologous mesenchymal stem cells"), Intervention(None, "Autologous Mesenchymal Stem Cells"),
        Intervention(None, "saline")))
    fields = ("brief_title", "conditions", "interventions")
    why = explain(query, cand, {}, np.array([np.nan, 0.2, 0.8]), fields)
    assert why["summary"] == "similar interventions: autologous mesenchymal stem cells · saline"
    why = explain(query, cand, {}, np.array([np.nan, 0.9, 0.1]), fields)
    assert why["summary"] == "similar conditions: MSA"
    why = explain(query, cand, {}, np.array([0.9, 0.1, 0.1]), fields)
    assert why["summary"] == "similar title"


def test_filters_still_return_k_when_enough_trials_match(ranker, index):
    completed = [t for t in index.trials if t.overall_status is Status.COMPLETED]
    assert len(completed) > 6
    query = next(t for t in index.trials if t.overall_status is not Status.COMPLETED)
    related = ranker.related(query.nct_id, 5, filters=Filters.parse(status=["Completed"]))
    assert len(related) == 5
    assert all(r.status == "COMPLETED" for r in related)


def test_filter_on_a_rare_value_returns_every_match(ranker, index):
    # A filter matching fewer trials than the candidate pool must still find all of them.
    phase_matches = [t for t in index.trials if t.phases and Phase.PHASE4 in t.phases]
    query = index.trials[0]
    expected = {t.nct_id for t in phase_matches} - {query.nct_id}
    related = ranker.related(query.nct_id, 50, filters=Filters.parse(phase=["Phase 4"]))
    assert {r.nct_id for r in related} == expected


def test_filters_parse_both_spellings_and_reject_unknown_values():
    assert Filters.parse(status=["Active, not recruiting"]) == Filters.parse(status=["ACTIVE_NOT_RECRUITING"])
    assert Filters.parse(phase=["Phase 1/Phase 2"]).phase == (Phase.PHASE1, Phase.PHASE2)
    assert Filters.parse(phase=["PHASE2", "phase 2"]).phase == (Phase.PHASE2,)
    with pytest.raises(InvalidParameter, match="allowed values"):
        Filters.parse(status=["Finished"])


def test_candidates_with_a_small_pool_still_fill_k(index):
    tiny = Ranker(index, n_candidates=1)
    assert len(tiny.related(index.trials[0].nct_id, 7)) == 7


def test_k_must_be_positive(ranker, index):
    with pytest.raises(InvalidParameter, match="k must be >= 1"):
        ranker.related(index.trials[0].nct_id, 0)


@pytest.mark.slow
def test_a_new_document_gets_the_same_list_as_its_indexed_twin(ranker, index):
    import dataclasses

    trial = index.trials[3]
    as_new = dataclasses.replace(trial, brief_title=trial.brief_title + " ")  # differs, so it is re-featurized
    a = [r.nct_id for r in ranker.related(trial.nct_id, 5)]
    b = [r.nct_id for r in ranker.related_to_trial(as_new, 5)]
    assert trial.nct_id not in b
    assert len(set(a) & set(b)) >= 4


def test_weights_change_the_order(index):
    query = index.trials[0].nct_id
    lexical = [r.nct_id for r in Ranker(index, BlendWeights(semantic=0, structured=0, lexical=1)).related(query, 10)]
    semantic = [r.nct_id for r in Ranker(index, BlendWeights(semantic=1, structured=0, lexical=0)).related(query, 10)]
    assert lexical != semantic
