"""Aspect lists (condition, intervention, design) on hand-checked real trials of the session index,
with filters, documents, the CLI and the API."""

from __future__ import annotations

import json

import pytest

from similarity import Filters, InvalidParameter
from similarity.cli import main
from similarity.ranking.aspects import ASPECT_SIGNALS, Aspect, aspect_blend

pytestmark = pytest.mark.slow

SOCA_FOSCARNET_GANCICLOVIR = "NCT00000136"  # Foscarnet and ganciclovir for CMV retinitis in AIDS
SOCA_CMV = "NCT00000134"  # ganciclovir, foscarnet; HIV infections, AIDS


def test_aspects_parse_and_blend():
    assert Aspect.parse(None) is Aspect.OVERALL and Aspect.parse(" Intervention ") is Aspect.INTERVENTION
    with pytest.raises(InvalidParameter, match="aspect must be one of overall, condition, intervention, design"):
        Aspect.parse("drug")
    blend = aspect_blend(Aspect.CONDITION, ("field:conditions", "attr:conditions", "lexical"))
    assert dict(blend.weights) == {"field:conditions": 1.0, "attr:conditions": 1.0}
    with pytest.raises(InvalidParameter, match="none of the signals of the design aspect"):
        aspect_blend(Aspect.DESIGN, ("field:brief_title",))
    assert set(ASPECT_SIGNALS) == {Aspect.CONDITION, Aspect.INTERVENTION, Aspect.DESIGN}


def test_intervention_aspect_lists_the_same_drugs_first(ranker):
    items = ranker.related(SOCA_FOSCARNET_GANCICLOVIR, 5, aspect="intervention")
    assert items[0].nct_id == SOCA_CMV  # the only other trial of ganciclovir and foscarnet (hand-checked)
    assert items[0].why["summary"].startswith("same interventions: ")
    assert {"Ganciclovir", "Foscarnet"} <= set(items[0].why["shared"]["interventions"])
    assert all(i.why["aspect"] == "intervention" for i in items)
    # every item's reason leads with the interventions, shared or similar
    assert all(i.why["summary"].split(":")[0] in ("same intervention", "same interventions", "similar interventions",
                                                    "similar interventions") for i in items)


def test_condition_aspect_lists_trials_of_the_same_conditions(ranker, index):
    items = ranker.related(SOCA_CMV, 6, aspect="condition")
    hiv = {t.nct_id for t in index.trials if "HIV Infections" in (t.conditions or ())}
    assert len(hiv) >= 5 and {i.nct_id for i in items[:4]} <= hiv  # hand-checked: five other HIV trials
    assert items[0].why["summary"].startswith("Same condition")


def test_design_aspect_explains_the_shared_design(ranker, index):
    items = ranker.related(SOCA_CMV, 5, aspect="design")
    query = index.trial(SOCA_CMV)
    for item in items:
        assert item.why["aspect"] == "design"
        assert item.why["summary"].startswith(("same design: ", "similar design"))
        if "interventional" in item.why["summary"]:
            assert index.trial(item.nct_id).study_type == query.study_type


def test_aspects_combine_with_filters_and_documents(ranker, index):
    filters = Filters.parse(status=["COMPLETED"])
    items = ranker.related(SOCA_CMV, 5, aspect="intervention", filters=filters)
    assert items and all(index.trial(i.nct_id).overall_status.value == "COMPLETED" for i in items)
    assert SOCA_CMV not in [i.nct_id for i in items]
    trial = index.trial(SOCA_FOSCARNET_GANCICLOVIR)
    import dataclasses

    edited = dataclasses.replace(trial, brief_summary=(trial.brief_summary or "") + " Edited.")
    from_doc = ranker.related_to_trial(edited, 3, aspect="intervention")
    assert from_doc[0].nct_id == SOCA_CMV and SOCA_FOSCARNET_GANCICLOVIR not in [i.nct_id for i in from_doc]


def test_overall_is_the_default_list(ranker):
    a = [r.to_dict() for r in ranker.related(SOCA_CMV, 5)]
    b = [r.to_dict() for r in ranker.related(SOCA_CMV, 5, aspect="overall")]
    assert a == b and all("aspect" not in r["why"] for r in a)


def test_cli_aspect(index_dir, capsys):
    assert main(["related", SOCA_FOSCARNET_GANCICLOVIR, "--index", str(index_dir), "-k", "2", "--aspect", "intervention"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Related by intervention to {SOCA_FOSCARNET_GANCICLOVIR}") and SOCA_CMV in out
    assert main(["related", SOCA_CMV, "--index", str(index_dir), "--aspect", "drug"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_api_aspect(index_dir, ranker):
    from fastapi.testclient import TestClient

    from similarity.service import create_app

    with TestClient(create_app(index_dir)) as client:
        response = client.get(f"/trials/{SOCA_FOSCARNET_GANCICLOVIR}/related", params={"k": 3, "aspect": "intervention"})
        assert response.status_code == 200
        want = ranker.related(SOCA_FOSCARNET_GANCICLOVIR, 3, aspect="intervention")
        assert [r["nct_id"] for r in response.json()["related"]] == [w.nct_id for w in want]
        assert response.json()["related"][0]["why"]["aspect"] == "intervention"
        bad = client.get(f"/trials/{SOCA_CMV}/related", params={"aspect": "drug"})
        assert bad.status_code == 422 and "aspect" in bad.json()["detail"]
        schema = client.get("/openapi.json").json()
        params = {p["name"]: p for p in schema["paths"]["/trials/{nct_id}/related"]["get"]["parameters"]}
        assert params["aspect"]["schema"]["enum"] == ["overall", "condition", "intervention", "design"]
        doc = json.loads(json.dumps({"nct_id": "NCT99999998", "brief_title": "Ganciclovir for CMV retinitis",
                                     "interventions": [{"type": "Drug", "name": "Ganciclovir"}]}))
        posted = client.post("/related", params={"k": 2, "aspect": "intervention"}, json=doc)
        assert posted.status_code == 200 and posted.json()["related"][0]["why"]["aspect"] == "intervention"
