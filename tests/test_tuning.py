"""The learned blend: it learns what the labels reward, cross-validation never scores a query with
weights fitted on it, and fit-weights / evaluate --cv work end to end on a saved index."""

import json
import shutil

import numpy as np
import pytest

from similarity import BlendWeights, InvalidParameter, Ranker, TrialIndex
from similarity.ranking import CascadeBlend, LearnedBlend, blend_from_dict
from similarity.ranking import Signals
from similarity.cli import main
from similarity.features.fields import attribute_sets
from similarity.ranking.tuning import cross_validate_blend, cross_validated_engine, fit_blend, labelled_signals


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
    blend = fit_blend(data, structure="groups", C=1.0)
    assert blend.fitted_on["structure"] == "groups"
    coef, prior = dict(blend.coef), BlendWeights().inner_weights()
    for prefix in ("field:", "attr:"):
        names = [n for n in data.names if n.startswith(prefix)]
        total = sum(coef[n] for n in names)
        if total:
            weights = np.array([prior.get(n, 1.0) for n in names])  # as _basis: 1 where the prior is silent
            assert [coef[n] for n in names] == pytest.approx((total * weights / weights.sum()).tolist(), abs=1e-5)
    # what the labels reward (shared MeSH terms) wins over chance, as with one weight per signal
    order = np.argsort(-blend.decision(data.names, data.X))
    assert data.y[order[: data.y.sum()]].mean() > data.y.mean() + 0.2
    # leaving a signal out takes it out of its group's mean, the others keep their proportions
    without = dict(fit_blend(data, structure="groups", C=1.0, exclude=("attr:condition_mesh",)).coef)
    assert without["attr:condition_mesh"] == 0
    if without["attr:conditions"]:
        assert without["attr:conditions"] / without["attr:phase"] == pytest.approx(
            prior["attr:conditions"] / prior["attr:phase"], rel=1e-3)
    with pytest.raises(InvalidParameter, match="structure"):
        fit_blend(data, structure="trees")


def test_auto_C_and_exclude(data):
    blend = fit_blend(data, structure="groups", exclude=("attr:",))
    assert blend.fitted_on["C"] in (0.01, 0.03, 0.1, 0.3, 1.0)
    assert all(v == 0 for k, v in blend.coef if k.startswith("attr:"))
    with pytest.raises(InvalidParameter, match="C must be"):
        fit_blend(data, C=-1.0)
    with pytest.raises(InvalidParameter, match="objective"):
        fit_blend(data, objective="listwise")


@pytest.mark.parametrize("structure", ["groups", "cascade"])
def test_cross_validation_never_uses_the_query_itself(data, structure):
    blends = cross_validate_blend(data, C=1.0, structure=structure)
    assert set(blends) == set(np.unique(data.queries))
    for q in list(blends)[:3]:
        without_q = fit_blend(data.subset(data.queries != q), C=1.0, structure=structure)
        assert blends[q] == without_q
        assert blends[q] != fit_blend(data, C=1.0, structure=structure)


@pytest.mark.parametrize("structure", ["groups", "cascade"])
def test_learned_blend_round_trips_and_components_add_up(data, ranker, index, structure):
    blend = fit_blend(data, C=1.0, structure=structure)
    again = blend_from_dict(json.loads(json.dumps(blend.to_dict())))
    assert type(again) is type(blend) and again == blend
    learned = ranker.with_blend(again)
    for r in learned.related(index.trials[0].nct_id, 12):
        assert sum(r.why["components"].values()) == pytest.approx(r.score, abs=1e-9)


def test_cascade_fits_a_retrieve_blend_without_structured_signals_and_a_per_signal_rerank_blend(data):
    cascade = fit_blend(data, C=1.0)  # the default structure
    assert isinstance(cascade, CascadeBlend) and cascade.depth == 10
    assert cascade.fitted_on["structure"] == "cascade" and cascade.fitted_on["C"] == {"retrieve": 1.0, "rerank": 1.0}
    retrieve, rerank = dict(cascade.retrieve.coef), dict(cascade.rerank.coef)
    assert all(v == 0 for k, v in retrieve.items() if k.startswith("attr:"))
    assert sum(retrieve.values()) == pytest.approx(1.0, abs=1e-4)
    assert retrieve == dict(fit_blend(data, C=1.0, structure="groups", exclude=("attr:",)).coef)
    assert rerank == dict(fit_blend(data, C=1.0, structure="signals").coef)
    assert rerank["attr:condition_mesh"] > 0  # what the labels reward, learned by the rerank stage
    # exclude reaches both stages
    without = fit_blend(data, C=1.0, exclude=("lexical",))
    assert dict(without.retrieve.coef)["lexical"] == 0 and dict(without.rerank.coef)["lexical"] == 0
    # with only structured signals left, the retrieve stage uses them
    only = fit_blend(data, C=1.0, exclude=("field:", "lexical"))
    assert sum(dict(only.retrieve.coef).values()) == pytest.approx(1.0, abs=1e-4)


def _cascade_by_hand(retrieve, rerank, depth):
    return CascadeBlend(LearnedBlend(coef=retrieve), LearnedBlend(coef=rerank), depth=depth)


def test_cascade_reorders_only_the_retrieve_blends_first_places():
    names = ("field:summary", "lexical")
    signals = Signals(np.arange(6), names, ("semantic", "lexical"),
                      np.array([[0.9, 0.0], [0.8, 0.5], [0.7, 1.0], [0.6, 0.9], [0.5, 0.1], [0.4, 0.2]]))
    cascade = _cascade_by_hand({"field:summary": 1.0}, {"lexical": 1.0}, depth=3)
    components, order = cascade.rank(signals)
    # the summary cosine picks rows 0-2; BM25 orders them (2, 1, 0); rows 3-5 keep the first order,
    # although row 3's BM25 would have put it second
    assert order.tolist() == [2, 1, 0, 3, 4, 5]
    scores = sum(components.values())
    assert scores.tolist() == pytest.approx([0.0, 0.5, 1.0, 0.6, 0.5, 0.4])  # each row scored by its stage
    assert components["semantic"][:3].tolist() == [0, 0, 0] and components["lexical"][3:].tolist() == [0, 0, 0]
    key = cascade.decision(names, signals.values)
    assert np.argsort(-key, kind="stable").tolist() == order.tolist()
    assert cascade.combine(signals)["lexical"].tolist() == components["lexical"].tolist()
    # depth past the candidates: the rerank blend orders them all
    assert _cascade_by_hand({"field:summary": 1.0}, {"lexical": 1.0}, 10).rank(signals)[1].tolist() == [2, 3, 1, 5, 4, 0]
    with pytest.raises(InvalidParameter, match="depth"):
        _cascade_by_hand({"lexical": 1.0}, {"lexical": 1.0}, 0)
    with pytest.raises(InvalidParameter, match="cascades"):
        CascadeBlend(cascade, LearnedBlend(coef={"lexical": 1.0}))


def test_cascade_related_list_tags_each_trial_with_the_stage_that_placed_it(data, ranker, index):
    cascade = ranker.with_blend(fit_blend(data, C=1.0), diversity=None)
    query = index.trials[0].nct_id
    related = cascade.related(query, 15)
    assert [r.why["stage"] for r in related] == ["rerank"] * 10 + ["retrieve"] * 5
    head = [r.score for r in related[:10]]
    assert head == sorted(head, reverse=True)
    # the first ten are the retrieve blend's first ten, in the rerank blend's order
    retrieve = ranker.with_blend(cascade.blend.retrieve, diversity=None).related(query, 15)
    assert {r.nct_id for r in related[:10]} == {r.nct_id for r in retrieve[:10]}
    assert [r.nct_id for r in related[10:]] == [r.nct_id for r in retrieve[10:]]
    assert "stage" not in ranker.with_blend(cascade.blend.retrieve).related(query, 3)[0].why


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
    assert shipped.manifest.blend is None  # a new index ranks with the package's default: the fusion
    assert Ranker(shipped).blend.to_dict()["method"] == "fusion"
    shipped.manifest.blend = BlendWeights().to_dict()
    shipped.save(copy)
    # nested CV re-makes every choice inside the folds: it does not depend on the saved blend
    assert main(["evaluate", "--index", str(copy), "--pairs", str(pairs), "--cv", "--folds", "3",
                 "--designs", "fusion,cascade", "--baselines", "bm25"]) == 0
    assert "design chosen in the outer folds" in capsys.readouterr().out

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "1", "--structure", "cascade"]) == 0
    out = capsys.readouterr().out
    assert "cross-validated by query" in out and "saved the blend" in out
    assert "(pointwise, cascade, retrieve C=1, rerank C=1)" in out
    assert "\nretrieve:\n" in out and "\nrerank (first 10):\n" in out
    reloaded = TrialIndex.load(copy)
    assert reloaded.manifest.blend["method"] == "cascade"
    assert Ranker(reloaded).blend.method == "cascade"

    assert main(["evaluate", "--index", str(copy), "--pairs", str(pairs), "--cv", "--json", "--baselines", "bm25"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["methods"]) == {"engine", "bm25"}

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "1", "--structure", "signals",
                 "--dry-run"]) == 0
    assert "(pointwise, signals, C=1)" in capsys.readouterr().out
    assert TrialIndex.load(copy).manifest.blend["fitted_on"]["structure"] == "cascade"  # dry run: unchanged

    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--C", "many", "--structure", "groups"]) == 1
    assert "C must be" in capsys.readouterr().err

    # the default: choose the design by cross-validation, ship the winner
    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs)]) == 0
    out = capsys.readouterr().out
    assert "designs scored by 4-fold cross-validation" in out and "\nchosen: " in out
    saved = TrialIndex.load(copy).manifest.blend
    assert saved["fitted_on"]["design"] in out and saved["fitted_on"]["pairs_file"] == "pairs.tsv"
    assert main(["fit-weights", "--index", str(copy), "--pairs", str(pairs), "--structure", "fusion"]) == 0
    saved = TrialIndex.load(copy).manifest.blend  # the fusion, with the coverage weight chosen on the same pairs
    assert (saved["base"] if saved["method"] == "covering" else saved)["method"] == "fusion"


def test_numpy_ndcg_equals_ranx(data):
    from similarity.ranking.tuning import _mean_ndcg, rerank_ndcg

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
    from similarity.ranking.tuning import refit_params

    blend = fit_blend(data, C=1.0)
    blend.fitted_on.update(random_negatives=30, C_setting="auto")
    assert refit_params(blend) == {"objective": "pointwise", "C": "auto", "structure": "cascade", "random_negatives": 30}
    # a blend saved before these settings were recorded: fitted per signal, labelled pairs only
    old = LearnedBlend(coef=blend.rerank.coef, fitted_on={"objective": "pairwise", "C": 0.1})
    assert refit_params(old) == {"objective": "pairwise", "C": "auto", "structure": "signals", "random_negatives": 0}


@pytest.mark.parametrize("saved", [
    {"method": "cascade", "retrieve": {"method": "learned", "coef": {"lexical": 1.0}}},  # no rerank stage
    {"method": "cascade", "retrieve": {"method": "learned"}, "rerank": {"method": "learned", "coef": {}}},
    {"method": "cascade", "retrieve": {"method": "wsum"}, "rerank": {"method": "wsum"}, "depth": "ten"},
    {"method": "learned"},
    {"method": "wsum", "semantic": 1.0, "colour": "blue"},
])
def test_a_malformed_saved_blend_is_a_clear_error(saved, capsys, index_dir, tmp_path):
    with pytest.raises(InvalidParameter, match="blend"):
        blend_from_dict(saved)
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy, ignore=shutil.ignore_patterns("cache"))
    index = TrialIndex.load(copy)
    index.manifest.blend = saved
    index.save(copy)
    assert main(["related", index.trials[0].nct_id, "--index", str(copy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("related-trials: error:") and "blend" in err and "Traceback" not in err


def test_evaluate_ranks_a_cascade_by_its_order_not_its_scores(data, ranker, index):
    from similarity.evaluation import evaluate
    from similarity.ranking.tuning import rerank_ndcg

    # retrieve by the summary cosine, rerank the first 3 by BM25: the re-ordered head carries BM25
    # scores, the tail its cosines, so sorting the scores would interleave the two stages
    names = data.names
    cascade = _cascade_by_hand({"field:summary": 1.0}, {"lexical": 1.0}, depth=3)
    pairs = mesh_pairs(index)
    labelled = data.subset(np.array([c in pairs[q] for q, c in zip(data.queries, data.candidates)]))
    keys, sums = np.zeros(len(labelled.y)), np.zeros(len(labelled.y))
    for q in np.unique(labelled.queries):
        rows = labelled.queries == q
        X = labelled.X[rows]
        keys[rows] = cascade.decision(names, X)
        summary, lexical = X[:, names.index("field:summary")], X[:, names.index("lexical")]
        head = np.argsort(-summary, kind="stable")[:3]
        sums[rows] = np.where(np.isin(np.arange(len(X)), head), lexical, summary)  # each row's stage score
    by_order, by_score = rerank_ndcg(labelled, keys), rerank_ndcg(labelled, sums)
    assert by_order != pytest.approx(by_score)  # the fixture tells the two apart
    result = evaluate(index, pairs, engines={"engine": ranker.with_blend(cascade)}, baselines=())
    assert result.methods["engine"]["nDCG@5"] == pytest.approx(by_order, abs=1e-4)
