"""The z-score fusion, the lexical cosine, design selection and nested cross-validation: what the
shipped ranker is and how its quality is measured without any outer test query reaching a choice."""

import dataclasses
import json

import numpy as np
import pytest

from similarity import InvalidParameter, TrialIndex
from similarity.ranking import FusionBlend, blend_from_dict, default_blend
from similarity.ranking.coverage import CoveringBlend
from similarity.cli import main
from similarity.evaluation import EvaluationResult, bootstrap_interval, nested_cross_validation
from similarity.ranking.selection import (
    DESIGNS,
    Design,
    query_signals,
    rerank_ndcg5,
    retrieve_recall10,
    select_design,
)
from similarity.ranking import Signals

from test_tuning import mesh_pairs


# ------------------------------------------------------------------ the fusion
def _signals(values, names=("field:summary", "field:brief_title", "attr:phase", "lexical")):
    groups = tuple("semantic" if n.startswith("field:") else "structured" if n.startswith("attr:") else "lexical"
                   for n in names)
    values = np.asarray(values, dtype=float)
    return Signals(np.arange(len(values)), tuple(names), groups, values)


def test_fusion_is_the_weighted_mean_of_z_scores_over_the_list():
    values = [[0.9, 0.2, 1.0, 0.10], [0.5, 0.8, 0.0, 0.30], [0.1, 0.5, 0.5, 0.25]]
    signals = _signals(values)
    blend = FusionBlend()  # field: and lexical weigh 1, attr: 0
    components, order = blend.rank(signals)
    v = np.array(values)
    z = (v - v.mean(0)) / v.std(0)
    expected = (z[:, 0] + z[:, 1] + z[:, 3]) / 3  # the weighted signals present: two fields and BM25
    assert sum(components.values()) == pytest.approx(expected)
    assert components["structured"].tolist() == [0, 0, 0]  # attr:phase is not a fusion signal
    assert order.tolist() == np.argsort(-expected, kind="stable").tolist()
    # a z-score ignores each signal's own scale: multiplying one changes nothing
    scaled = v.copy()
    scaled[:, 3] *= 100
    assert blend.rank(_signals(scaled))[1].tolist() == order.tolist()


def test_fusion_treats_unknown_values_as_the_lists_mean_and_constant_signals_as_nothing():
    values = [[0.9, 0.5, np.nan, 0.1], [np.nan, 0.5, np.nan, 0.3], [0.1, 0.5, np.nan, 0.2]]
    parts = FusionBlend({"field:": 1.0, "attr:": 1.0, "lexical": 1.0}).combine(_signals(values))
    summary = np.array([0.9, 0.1])
    z_summary = (summary - summary.mean()) / summary.std()
    lexical = np.array([0.1, 0.3, 0.2])
    z_lexical = (lexical - lexical.mean()) / lexical.std()
    # 4 weighted signals: the constant title and the all-unknown phase add 0, the unknown summary 0
    assert parts["semantic"] == pytest.approx(np.array([z_summary[0], 0.0, z_summary[1]]) / 4)
    assert parts["structured"].tolist() == [0, 0, 0]
    assert parts["lexical"] == pytest.approx(z_lexical / 4)
    # one candidate: nothing to compare it with
    assert sum(FusionBlend().combine(_signals([[0.3, 0.2, 1.0, 0.4]])).values()).tolist() == [0.0]


def test_fusion_weights_by_name_and_kind_and_round_trips():
    blend = FusionBlend({"field:": 0.5, "field:summary": 2.0, "lexical": 1.0})
    assert blend.weight_of("field:summary") == 2.0 and blend.weight_of("field:text") == 0.5
    assert blend.weight_of("attr:phase") == 0.0 and blend.weight_of("lexical_cosine") == 0.0
    assert blend_from_dict(json.loads(json.dumps(blend.to_dict()))) == blend
    for bad in ({}, {"lexical": -1.0}, {"lexical": 0.0}):
        with pytest.raises(InvalidParameter, match="fusion weights"):
            FusionBlend(bad)


@pytest.mark.parametrize("saved", [
    {"method": "fusion", "weights": {"lexical": -1.0}},
    {"method": "fusion", "weights": {}},
    {"method": "fusion", "weights": ["lexical"]},
])
def test_a_malformed_saved_fusion_is_a_clear_error(saved):
    with pytest.raises(InvalidParameter, match="fusion"):
        blend_from_dict(saved)


def test_the_text_field_is_the_dense_baselines_text(sample_trials):
    from similarity.features import TextField, concatenated_text, field_text

    for trial in sample_trials[:10]:
        assert field_text(trial, TextField.TEXT) == concatenated_text(trial)


@pytest.mark.slow
def test_rrf_baseline_fuses_the_ranks_of_bm25_and_dense(index, tmp_path):
    from similarity.evaluation import make_baseline

    rows = np.arange(1, len(index))
    bm25 = make_baseline("bm25").fit(index)
    dense = make_baseline("dense", cache_dir=str(tmp_path)).fit(index)
    rrf = make_baseline("rrf", cache_dir=str(tmp_path)).fit(index)
    expected = np.zeros(len(rows))
    for part in (bm25, dense):
        ranks = np.empty(len(rows))
        ranks[np.argsort(-part.scores(0, rows), kind="stable")] = np.arange(1, len(rows) + 1)
        expected += 1 / (60 + ranks)
    assert rrf.scores(0, rows) == pytest.approx(expected)
    assert make_baseline("rrf").fit(index, parts=(bm25, dense)).scores(0, rows) == pytest.approx(expected)


def test_the_shipped_default_is_the_fusion_for_any_layout():
    assert isinstance(default_blend(("field:brief_title", "field:text", "lexical", "lexical_cosine")), FusionBlend)
    assert isinstance(default_blend(("field:title", "attr:phase", "lexical")), FusionBlend)


def test_a_shipped_covering_blend_keeps_its_coverage_over_any_layout(monkeypatch, tmp_path):
    from similarity.ranking import blend as blend_module

    covering = CoveringBlend(FusionBlend(), 0.25, fitted_on={"design": "fusion"})
    monkeypatch.setattr(blend_module, "DEFAULT_BLEND_FILE", "covering.json")
    (tmp_path / "covering.json").write_text(json.dumps(covering.to_dict()))
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda _: tmp_path)
    blend = default_blend(("field:brief_title", "field:text", "lexical", "lexical_cosine"))
    assert isinstance(blend, CoveringBlend) and blend.weight == 0.25 and isinstance(blend.base, FusionBlend)


def test_new_indexes_rank_with_the_fusion(index, ranker):
    assert index.manifest.blend is None  # nothing fitted: the package's default blend
    assert isinstance(ranker.blend, FusionBlend)
    assert "field:text" in ranker.signals.names and "lexical_cosine" in ranker.signals.names


# ------------------------------------------------------------------ the lexical cosine
def test_lexical_cosine_is_the_cosine_of_bm25_weight_rows(index, ranker):
    lexical = index.lexical.toarray().astype(np.float64)
    norms = np.linalg.norm(lexical, axis=1)
    q = next(t.nct_id for t in index.trials)
    row = index.row(q)
    rows = np.arange(len(index))
    values = ranker.signals.compute(ranker.features(q), rows).column("lexical_cosine")
    expected = lexical @ lexical[row] / np.maximum(norms * norms[row], 1e-12)
    assert values == pytest.approx(np.where(norms > 0, expected, np.nan), abs=1e-5, nan_ok=True)
    assert values[row] == pytest.approx(1.0, abs=1e-5)
    # the norms are written with the build and mapped, not recomputed by a serving process
    assert (index.path / "lexical_norms.npy").exists()
    assert np.asarray(index.lexical_norms) == pytest.approx(norms, rel=1e-5)


def test_a_build_saved_before_the_norms_computes_them(index_dir, tmp_path):
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("cache"))
    saved = TrialIndex.load(copy)
    (saved.path / "lexical_norms.npy").unlink()
    old = TrialIndex.load(copy)
    assert np.asarray(old.lexical_norms) == pytest.approx(np.asarray(saved.lexical_norms))


@pytest.mark.slow
def test_lexical_cosine_of_a_new_document_equals_the_indexed_ones(index, ranker):
    trial = index.trials[0]
    rows = np.arange(len(index))
    indexed = ranker.signals.compute(ranker.features(trial.nct_id), rows).column("lexical_cosine")
    document = ranker.signals.compute(ranker.features_of_trial(trial), rows).column("lexical_cosine")
    assert document == pytest.approx(indexed, abs=1e-4, nan_ok=True)


# ------------------------------------------------------------------ selection and nested CV
@pytest.fixture(scope="module")
def queries(ranker, index):
    return query_signals(ranker, mesh_pairs(index), random_negatives=5)


def test_query_signals_hold_candidates_labelled_trials_and_random_negatives(queries, ranker, index):
    pairs = mesh_pairs(index)
    for q in queries:
        rows = q.signals.rows.tolist()
        assert len(rows) == len(set(rows)) and index.row(q.query_id) not in rows
        labelled = {index.nct_id(r): int(l) for r, l in zip(rows, q.labels) if l >= 0}
        assert labelled == {c: l for c, l in pairs[q.query_id].items() if c != q.query_id}
        assert q.n_positives == sum(labelled.values())
        expected = set(ranker.candidates(ranker.features(q.query_id), ranker.n_candidates).tolist())
        assert {r for r, c in zip(rows, q.candidate) if c} == expected
        assert not (q.random_negative & q.labelled).any()


def test_measures_of_a_design_on_one_query(queries):
    q = queries[0]
    perfect = FusionBlend({"attr:condition_mesh": 1.0})  # the labels of mesh_pairs: shared MeSH terms
    assert rerank_ndcg5(perfect, q) == pytest.approx(1.0)
    assert 0.0 <= retrieve_recall10(perfect, q) <= 1.0


def _recording(name, parameters, calls, blend=None):
    def fit(queries):
        calls.append(frozenset(q.query_id for q in queries))
        return dataclasses.replace(blend or FusionBlend(), fitted_on={"seen": sorted(q.query_id for q in queries)})

    return Design(name, parameters, fit)


def test_selection_keeps_the_simplest_design_within_one_standard_error(queries, monkeypatch):
    calls = []
    # the same blend with more "parameters" never wins clearly: the simpler one is kept
    monkeypatch.setitem(DESIGNS, "simple", _recording("simple", 0, calls))
    monkeypatch.setitem(DESIGNS, "flexible", _recording("flexible", 9, calls))
    assert select_design(queries, ("flexible", "simple")).design == "simple"
    # a design that is clearly better wins however many parameters it has
    monkeypatch.setitem(DESIGNS, "mesh", _recording("mesh", 9, calls, FusionBlend({"attr:condition_mesh": 1.0})))
    monkeypatch.setitem(DESIGNS, "noise", _recording("noise", 0, calls, FusionBlend({"attr:status": 1.0})))
    selection = select_design(queries, ("noise", "mesh"))
    assert selection.design == "mesh" and selection.scores["mesh"] > selection.scores["noise"]
    assert selection.blend.fitted_on["seen"] == sorted(q.query_id for q in queries)  # refitted on all
    with pytest.raises(InvalidParameter, match="unknown design"):
        select_design(queries, ("trees",))


def _leaks(folds, calls, per_fold):
    """Fit calls (in order, ``per_fold`` per outer fold) that saw one of their fold's test queries."""
    return [ids & set(test) for (test, _), start in zip(folds, range(0, len(calls), per_fold))
            for ids in calls[start:start + per_fold] if ids & set(test)]


def test_nested_cv_never_lets_an_outer_test_query_reach_any_fit_or_choice(queries, monkeypatch):
    calls = []
    monkeypatch.setitem(DESIGNS, "a", _recording("a", 0, calls))
    monkeypatch.setitem(DESIGNS, "b", _recording("b", 3, calls, FusionBlend({"lexical": 1.0})))
    result = nested_cross_validation(queries, ("a", "b"), n_splits=4, inner_splits=3)
    ids = {q.query_id for q in queries}
    assert set(result.blends) == ids and sum(len(t) for t, _ in result.folds) == len(ids)
    per_fold = len(calls) // len(result.folds)
    assert per_fold == 2 * 3 + 1  # each design fitted on three inner folds, then the winner refitted
    assert not _leaks(result.folds, calls, per_fold)
    for test, selection in result.folds:
        assert not set(test) & set(selection.queries)
        for q in test:
            assert q not in result.blends[q].fitted_on["seen"]
    # the check itself catches a leak: the same calls against folds whose test queries were seen
    leaky = [(tuple(sorted(ids)), None)] * len(result.folds)
    assert _leaks(leaky, calls, per_fold)


def test_nested_cv_with_the_real_designs_and_cli(queries, index_dir, index, tmp_path, capsys):
    result = nested_cross_validation(queries, ("fusion", "learned per group"), n_splits=3, inner_splits=2)
    assert set(result.chosen()) <= {"fusion", "learned per group"} and sum(result.chosen().values()) == 3

    pairs = tmp_path / "pairs.tsv"
    lines = ["query_id\tcandidate_id\tlabel"]
    for q, cands in mesh_pairs(index).items():
        lines += [f"{q}\t{c}\t{label}" for c, label in cands.items()]
    pairs.write_text("\n".join(lines) + "\n")
    args = ["evaluate", "--index", str(index_dir), "--pairs", str(pairs), "--cv", "--folds", "3",
            "--designs", "fusion,learned per group", "--baselines", "bm25,tfidf"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "design chosen in the outer folds:" in out and "95% bootstrap intervals" in out
    assert "vs best baseline" in out
    assert main([*args, "--json", "--mode", "retrieve"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["paired"]["R@10"]) == {"bm25", "tfidf"}
    assert data["versus_best"]["R@10"]["baseline"] in ("bm25", "tfidf")
    assert sum(data["designs_chosen"].values()) == 3
    assert main([*args[:-2], "--designs", "trees"]) == 1
    assert "unknown design" in capsys.readouterr().err
    assert main([*args, "--folds", "1"]) == 1
    assert "--folds must be" in capsys.readouterr().err


# ------------------------------------------------------------------ intervals
def test_bootstrap_interval_and_paired_comparisons():
    assert bootstrap_interval([0.5] * 10) == (0.5, 0.5, 0.5)
    mean, lo, hi = bootstrap_interval(np.linspace(0, 1, 40))
    assert mean == pytest.approx(0.5) and lo < 0.5 < hi and hi - lo < 0.4
    per_query = {
        "engine": {"R@10": {"q1": 1.0, "q2": 0.5, "q3": 0.5}},
        "bm25": {"R@10": {"q1": 0.5, "q2": 0.5, "q3": 1.0}},
    }
    result = EvaluationResult("retrieve", 3, 0, {"engine": {"R@10": 2 / 3}, "bm25": {"R@10": 2 / 3}}, [], per_query)
    assert result.wins_ties_losses("engine", "bm25", "R@10") == (1, 1, 1)
    assert result.paired("engine", "bm25", "R@10")[0] == pytest.approx(0.0)
    with pytest.raises(InvalidParameter):
        bootstrap_interval([])
