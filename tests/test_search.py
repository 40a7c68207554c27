"""Free-text search: reading a text (vocabulary, phase, refusals), the ranker, the CLI, the API,
and the search evaluation, on the session's small real index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from similarity import Filters, InvalidParameter
from similarity.cli import main
from similarity.ingest import Phase
from similarity.ranking.text_query import MAX_QUERY_CHARS, Vocabulary, check_query_text, text_query

VOCABULARY = Vocabulary({
    "conditions": ["non-small cell lung cancer", "lung cancer", "type 2 diabetes mellitus", "cancer", "healthy"],
    "condition_mesh": ["carcinoma, non-small-cell lung", "diabetes mellitus, type 2"],
    "intervention_names": ["metformin", "placebo", "standard of care", "drug", "bevacizumab 15 mg/kg"],
    "intervention_mesh": ["metformin", "bevacizumab"],
})


# ------------------------------------------------------------------ reading a text
def test_longest_phrases_match_without_overlap_in_any_case():
    query = text_query("Metformin and BEVACIZUMAB in Non-Small-Cell Lung Cancer, phase II", VOCABULARY)
    assert query.matched["conditions"] == ["Non-Small-Cell Lung Cancer"]  # not "Lung Cancer" or "Cancer" too
    assert query.matched["interventions"] == ["Metformin", "BEVACIZUMAB"]
    assert query.trial.conditions == ("non-small cell lung cancer",)
    assert query.trial.condition_mesh is None  # "carcinoma, non-small-cell lung" is another phrase
    assert query.trial.intervention_names == ("metformin",)
    assert query.trial.intervention_mesh == ("metformin", "bevacizumab")
    assert query.trial.phases == (Phase.PHASE2,)
    assert query.trial.brief_title == query.text and query.trial.brief_summary == query.text


def test_generic_words_are_not_terms():
    query = text_query("A placebo-controlled drug study of standard of care", VOCABULARY)
    assert query.matched == {"conditions": [], "interventions": [], "phase": []}
    assert query.trial.conditions is None and query.trial.interventions is None
    assert text_query("in healthy volunteers", VOCABULARY).matched["conditions"] == ["healthy"]


@pytest.mark.parametrize("text, phases", [
    ("phase 1/2 trial", (Phase.PHASE1, Phase.PHASE2)), ("Phase I-II", (Phase.PHASE1, Phase.PHASE2)),
    ("a phase IV study", (Phase.PHASE4,)), ("PHASE3", (Phase.PHASE3,)), ("phase 0", (Phase.EARLY_PHASE1,)),
    ("phased withdrawal", None), ("emphasis on phase", None),
])
def test_phases_named_in_the_text(text, phases):
    assert text_query(text, VOCABULARY).trial.phases == phases


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   \n\t ", "empty"), ("12345 / 678", "no letter"), ("--- ???", "no letter"),
    ("x" * (MAX_QUERY_CHARS + 1), f"at most {MAX_QUERY_CHARS}"), (None, "must be text"), (42, "must be text"),
])
def test_texts_that_cannot_be_searched(text, message):
    with pytest.raises(InvalidParameter, match=message):
        check_query_text(text)


def test_control_characters_read_as_spaces():
    assert check_query_text("  metformin\x00in\x1fdiabetes\n") == "metformin in diabetes"
    assert check_query_text("Ménière’s disease") == "Ménière’s disease"
    assert check_query_text("阿尔茨海默病") == "阿尔茨海默病"


def test_vocabulary_of_the_index_holds_its_terms(ranker):
    vocabulary = ranker.vocabulary
    assert ("cytomegalovirus", "retinitis") in vocabulary.phrases
    assert ("ganciclovir",) in vocabulary.phrases and ("placebo",) not in vocabulary.phrases


# ------------------------------------------------------------------ the ranker
def test_search_finds_the_trials_the_text_names(ranker, index):
    result = ranker.search("Ganciclovir for cytomegalovirus retinitis in HIV infections, phase 3", 5)
    assert result.matched["interventions"] == ["Ganciclovir"] and "cytomegalovirus retinitis" in result.matched["conditions"]
    assert result.matched["phase"] == ["PHASE3"]
    top = [r.nct_id for r in result.related]
    assert top[0] in {"NCT00000134", "NCT00000136"}  # the two SOCA ganciclovir trials (hand-checked)
    assert {"NCT00000134", "NCT00000136"} <= set(top[:3])
    assert "ganciclovir" in result.related[0].why["summary"].lower()
    assert len(top) == len(set(top)) == 5


def test_search_is_deterministic_and_excludes_on_request(ranker):
    first = ranker.search("ipilimumab for unresectable melanoma", 3)
    again = ranker.search("  ipilimumab for unresectable melanoma ", 3)
    assert [r.to_dict() for r in first.related] == [r.to_dict() for r in again.related]
    assert first.related[0].nct_id == "NCT00495066"
    left_out = ranker.search_query(ranker.text_query("ipilimumab for unresectable melanoma"), 3, exclude="NCT00495066")
    assert "NCT00495066" not in [r.nct_id for r in left_out.related]


def test_search_with_filters_keeps_only_matching_trials_and_is_exact(ranker, index):
    filters = Filters.parse(status=["COMPLETED"], country=["United States"])
    text = "HIV infection treatment"
    got = ranker.search(text, 100, filters=filters).related
    qualifying = [t for t in index.trials if filters.matches(t)]
    assert got and len(got) == len(qualifying)
    assert all(filters.matches(index.trial(r.nct_id)) for r in got)
    # exact: the filtered list is the ranking of exactly the qualifying trials
    features = ranker.features_of_trial(ranker.text_query(text).trial)
    rows = np.array(sorted(index.row(t.nct_id) for t in qualifying))
    order = ranker.with_blend(diversity=None).rank(features, rows)[2]
    unspaced = ranker.with_blend(diversity=None).search(text, 100, filters=filters).related
    assert [r.nct_id for r in unspaced] == [index.nct_id(rows[i]) for i in order]


def test_search_refuses_bad_k_and_text(ranker):
    with pytest.raises(InvalidParameter, match="k must be"):
        ranker.search("melanoma", 0)
    with pytest.raises(InvalidParameter, match="empty"):
        ranker.search(" ")


# ------------------------------------------------------------------ CLI
def test_cli_search_prints_the_reading_and_the_list(index_dir, capsys):
    assert main(["search", "ipilimumab for melanoma, phase 2", "--index", str(index_dir), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "read as: conditions melanoma; interventions ipilimumab; phase PHASE2" in out
    assert "NCT00495066" in out and out.count("    score ") == 2


def test_cli_search_json_with_filters(index_dir, capsys):
    assert main(["search", "HIV infections", "--index", str(index_dir), "-k", "3", "--json", "--status", "COMPLETED"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == "HIV infections" and len(result["related"]) == 3
    assert {r["status"] for r in result["related"]} == {"COMPLETED"}


@pytest.mark.parametrize("argv, code, message", [
    (["search", "   "], 1, "search query is empty"),
    (["search", "1234"], 1, "no letter"),
    (["search", "x" * 2001], 1, "at most 2000"),
    (["search", "melanoma", "-k", "0"], 1, "-k must be"),
    (["search", "melanoma", "--sex", "other"], 2, "invalid choice"),
    (["search", "melanoma", "--age", "old"], 1, "age must be"),
])
def test_cli_search_errors_are_one_line(index_dir, capsys, argv, code, message):
    assert main(argv + ["--index", str(index_dir)]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------ API
@pytest.fixture(scope="module")
def client(index_dir):
    from fastapi.testclient import TestClient

    from similarity.service import create_app

    with TestClient(create_app(index_dir)) as client:
        yield client


@pytest.mark.slow
def test_api_search_matches_the_ranker(client, ranker):
    response = client.get("/search", params={"q": "Ganciclovir for CMV retinitis", "k": 4, "phase": "PHASE3"})
    assert response.status_code == 200
    body = response.json()
    expected = ranker.search("Ganciclovir for CMV retinitis", 4, filters=Filters.parse(phase=["PHASE3"]))
    assert (body["query"], body["matched"]) == (expected.query, expected.matched)
    assert [r["nct_id"] for r in body["related"]] == [r.nct_id for r in expected.related]
    for item, want in zip(body["related"], expected.related):
        assert item["score"] == pytest.approx(want.score) and item["why"]["summary"] == want.why["summary"]
    etag = response.headers["etag"]
    again = client.get("/search", params={"q": "Ganciclovir for CMV retinitis", "k": 4, "phase": "PHASE3"},
                       headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert client.get("/search", params={"q": "melanoma"}).headers["etag"] != etag


@pytest.mark.slow
@pytest.mark.parametrize("params, message", [
    ({}, "q: Field required"), ({"q": ""}, "at least 1 character"), ({"q": "  "}, "empty"),
    ({"q": "123"}, "no letter"), ({"q": "y" * 2001}, "at most 2000"), ({"q": "melanoma", "k": 0}, "k:"),
    ({"q": "melanoma", "sex": "x"}, "sex"), ({"q": "melanoma", "start_after": "soon"}, "start_after"),
])
def test_api_search_refusals_are_422(client, params, message):
    response = client.get("/search", params=params)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert len(response.json()["detail"]) < 300  # a long query is not echoed whole


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_api_search_never_fails_on_any_text(client, text):
    response = client.get("/search", params={"q": text, "k": 2})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert len(response.json()["related"]) == 2


# ------------------------------------------------------------------ evaluation
def test_search_evaluation_scores_every_design_and_the_cross_validated_choice(index):
    from similarity.evaluation.search import SEARCH_DESIGNS, evaluate_search, query_text

    # Hand-checked relations among the fixture trials: the SOCA trials share HIV and CMV retinitis.
    pairs = {
        "NCT00000134": {"NCT00000136": 1, "NCT00000135": 1, "NCT00000142": 1, "NCT00000102": 0},
        "NCT00000136": {"NCT00000134": 1, "NCT00000142": 1, "NCT00005014": 0},
        "NCT00006479": {"NCT00500292": 1, "NCT00031863": 1, "NCT00000125": 0},
        "NCT00000218": {"NCT00000270": 1},
    }
    found = evaluate_search(index, pairs, kind="terms", baselines=("bm25", "dense"), n_splits=2)
    assert found.result.queries == 4 and sum(found.chosen.values()) == 2
    assert set(found.result.methods) == {"engine", "bm25", "dense", *(f"design: {d}" for d in SEARCH_DESIGNS)}
    assert found.texts["NCT00000218"] == "Carbamazepine for Cocaine-Related Disorders, Substance-Related Disorders"
    assert query_text(index.trial("NCT00000168"), "terms").startswith("HIV Infections, Acquired")  # no intervention
    for method, values in found.result.methods.items():
        assert 0 <= values["R@10"] <= values["R@50"] <= 1
    # the engine row is, query by query, one of the designs' rows
    per = found.result.per_query
    for q in found.texts:
        assert any(per["engine"]["R@10"][q] == per[f"design: {d}"]["R@10"][q] for d in SEARCH_DESIGNS)
    assert found.result.methods["design: text + terms + summary"]["R@10"] > 0.5
    with pytest.raises(InvalidParameter, match="kind must be"):
        evaluate_search(index, pairs, kind="abstract")
