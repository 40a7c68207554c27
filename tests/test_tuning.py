"""The learned blend: it learns what the labels reward, cross-validation never scores a query with
weights fitted on it, and fit-weights / evaluate --cv work end to end on a saved index."""

import json
import shutil

import numpy as np
import pytest

from similarity import BlendWeights, InvalidParameter, Ranker, TrialIndex
from similarity.blend import LearnedBlend, blend_from_dict
from similarity.cli import main
from similarity.fields import attribute_sets
from similarity.tuning import cross_validate_blend, cross_validated_engine, fit_blend, labelled_signals


def mesh_pairs(index, n_queries=12, n_cands=10):
    """Labels on real trials: related = shares a condition MeSH term (what the blend must learn)."""
    trials = [t for t in index.trials if t.condition_mesh]
    mesh = {t.nct_id: attribute_sets(t)["condition_mesh"] for t in trials}
    pairs = {}
    for q in trials:
        shared = [c for c in trials if c is not q and mesh[c.nct_id] & mesh[q.nct_id]]
        other = [c for c in trials if not mesh[c.nct_id] & mesh[q.nct_id]]
        if shared and len(other) >= 3:
            cands = (shared[: n_cands // 2] + other)[:n_cands]
            pairs[q.nct_id] = {c.nct_id: int(c in shared) for c in cands}
        if len(pairs) == n_queries:
            break
    assert len(pairs) >= 4, "the fixture index needs trials sharing MeSH terms"
    return pairs


@pytest.fixture(scope="module")
def data(ranker, index):
    return labelled_signals(ranker, mesh_pairs(index))


def test_labelled_signals_shape(data, ranker):
    assert data.names == ranker.signals.names
    assert data.X.shape == (len(data.y), len(data.names))
    assert not np.isnan(data.X).any()
    assert set(np.unique(data.y)) == {0, 1}


@pytest.mark.parametrize("objective", ["pointwise", "pairwise"])
def test_fit_learns_what_the_labels_reward(data, objective):
    blend = fit_blend(data, objective=objective, structure="signals", C=1.0)
    coef = dict(blend.coef)
    assert min(coef.values()) >= 0  # nonnegative by default
    assert coef["attr:condition_mesh"] > 0
    assert coef["attr:condition_mesh"] == max(v for k, v in coef.items() if k.startswith("attr:"))
    order = np.argsort(-blend.decision(data.names, data.X))
    # the learned score puts MeSH-sharing pairs first far more often than chance
    assert data.y[order[: data.y.sum()]].mean() > data.y.mean() + 0.2


def test_grouped_fit_keeps_the_prior_inside_each_group(data):
    blend = fit_blend(data, C=1.0)
    assert blend.fitted_on["structure"] == "groups"
    coef, prior = dict(blend.coef), BlendWeights().inner_weights()
    for prefix in ("field:", "attr:"):
        names = [n for n in data.names if n.startswith(prefix)]
        total = sum(coef[n] for n in names)
        if total:
            weights = np.array([prior[n] for n in names])
            assert [coef[n] for n in names] == pytest.approx((total * weights / weights.sum()).tolist(), abs=1e-5)
    # what the labels reward (shared MeSH terms) wins over chance, as with one weight per signal
    order = np.argsort(-blend.decision(data.names, data.X))
    assert data.y[order[: data.y.sum()]].mean() > data.y.mean() + 0.2
    # leaving a signal out takes it out of its group's mean, the others keep their proportions
    without = dict(fit_blend(data, C=1.0, exclude=("attr:condition_mesh",)).coef)
    assert without["attr:condition_mesh"] == 0
    if without["attr:conditions"]:
        assert without["attr:conditions"] / without["attr:phase"] == pytest.approx(
            prior["attr:conditions"] / prior["attr:phase"], rel=1e-3)
    with pytest.raises(InvalidParameter, match="structure"):
        fit_blend(data, structure="trees")


def test_auto_C_and_exclude(data):
    blend = fit_blend(data, exclude=("attr:",))
    assert blend.fitted_on["C"] in (0.01, 0.03, 0.1, 0.3, 1.0)
    assert all(v == 0 for k, v in blend.coef if k.startswith("attr:"))
    with pytest.raises(InvalidParameter, match="C must be"):
        fit_blend(data, C=-1.0)
    with pytest.raises(InvalidParameter, match="objective"):
        fit_blend(data, objective="listwise")


def test_cross_validation_never_uses_the_query_itself(data):
    blends = cross_validate_blend(data, C=1.0)
    assert set(blends) == set(np.unique(data.queries))
    for q in list(blends)[:3]:
        without_q = fit_blend(data.subset(data.queries != q), C=1.0)
        assert blends[q].coef == without_q.coef
        assert blends[q].coef != fit_blend(data, C=1.0).coef


def test_learned_blend_round_trips_and_components_add_up(data, ranker, index):
    blend = fit_blend(data, C=1.0)
    again = blend_from_dict(json.loads(json.dumps(blend.to_dict())))
    assert isinstance(again, LearnedBlend) and again.coef == blend.coef
    learned = ranker.with_blend(again)
    for r in learned.related(index.trials[0].nct_id, 5):
        assert sum(r.why["components"].values()) == pytest.approx(r.score, abs=1e-9)


def test_cross_validated_engine(ranker, index):
    pairs = mesh_pairs(index)
    engine = cross_validated_engine(ranker, pairs, C=1.0)
    q = next(iter(pairs))
    assert isinstance(engine(q), Ranker) and engine(q).index is ranker.index
    assert engine(q).blend != engine("NCT99999999").blend


def test_fit_weights_cli_saves_the_blend_and_evaluate_cv(capsys, index_dir, index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("cache"))
    pairs = tmp_path / "pairs.tsv"
    lines = ["query_id\tcandidate_id\tlabel"]
    for q, cands in mesh_pairs(index).items():
        lines += [f"{q}\t{c}\t{label}" for c, label in cands.items()]
    pairs.write_text("\n".join(lines) + "\n")

    shipped = TrialIndex.load(copy)
    assert shipped.manifest["blend"]["method"] == "learned"  # a new index ships the default learned blend
    shipped.manifest["blend"] = BlendWeights().to_dict()
    shipped.save(copy)
    assert main(["evaluate", "--index", str(copy), "--pairs", str(pairs), "--cv", "--baselines", "bm25"]) == 1
    assert "run related-trials fit-weights first" in capsys.readouterr().err

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "1"]) == 0
    out = capsys.readouterr().out
    assert "cross-validated by query" in out and "saved the learned blend" in out
    reloaded = TrialIndex.load(copy)
    assert reloaded.manifest["blend"]["method"] == "learned"
    assert Ranker(reloaded).blend.method == "learned"

    assert main(["evaluate", "--index", str(copy), "--pairs", str(pairs), "--cv", "--json", "--baselines", "bm25"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["methods"]) == {"engine", "bm25"}

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "1", "--structure", "signals",
                 "--dry-run"]) == 0
    assert "(pointwise, signals, C=1)" in capsys.readouterr().out
    assert TrialIndex.load(copy).manifest["blend"]["fitted_on"]["structure"] == "groups"  # dry run: unchanged

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "many"]) == 1
    assert "--C must be" in capsys.readouterr().err


def test_numpy_ndcg_equals_ranx(data):
    from similarity.tuning import _mean_ndcg, rerank_ndcg

    rng = np.random.default_rng(0)
    for scores in (data.X[:, 0], rng.normal(size=len(data.y)), data.y.astype(float)):
        assert _mean_ndcg(data, scores) == pytest.approx(rerank_ndcg(data, scores), abs=1e-6)


def test_random_negatives_are_unlabelled_index_trials(ranker, index):
    pairs = mesh_pairs(index)
    plain = labelled_signals(ranker, pairs)
    more = labelled_signals(ranker, pairs, random_negatives=5)
    assert len(more.y) > len(plain.y)
    for q, c, y in zip(more.queries, more.candidates, more.y):
        assert c != q and c in index
        if c not in pairs[q]:
            assert y == 0
    assert labelled_signals(ranker, pairs, random_negatives=5).candidates.tolist() == more.candidates.tolist()


def test_candidate_negatives_come_from_the_querys_own_candidates(ranker, index):
    pairs = mesh_pairs(index)
    plain = labelled_signals(ranker, pairs)
    more = labelled_signals(ranker, pairs, candidate_negatives=3)
    assert len(more.y) > len(plain.y)
    for q in np.unique(more.queries):
        pool = {index.nct_id(r) for r in ranker.candidates(ranker.features(q), ranker.n_candidates)}
        added = [c for qq, c in zip(more.queries, more.candidates) if qq == q and c not in pairs[q]]
        assert len(added) <= 3 and set(added) <= pool and q not in added
    assert all(y == 0 for q, c, y in zip(more.queries, more.candidates, more.y) if c not in pairs[q])


def test_refit_params_reads_the_saved_settings(data):
    from similarity.tuning import refit_params

    blend = fit_blend(data, C=1.0)
    blend.fitted_on.update(random_negatives=30, C_setting="auto")
    assert refit_params(blend) == {"objective": "pointwise", "C": "auto", "structure": "groups", "random_negatives": 30}
    # a blend saved before these settings were recorded: fitted per signal, labelled pairs only
    old = LearnedBlend(coef=blend.coef, fitted_on={"objective": "pairwise", "C": 0.1})
    assert refit_params(old) == {"objective": "pairwise", "C": "auto", "structure": "signals", "random_negatives": 0}
