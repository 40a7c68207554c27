"""Aspect coverage of the overall list (xQuAD over the condition and intervention lists)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from similarity import InvalidParameter
from similarity.ranking import FusionBlend, Signals, blend_from_dict
from similarity.ranking.coverage import CoveringBlend
from similarity.ranking.selection import choose_coverage, criterion
from similarity.ranking.signals import signal_group

NAMES = ("field:text", "field:conditions", "field:interventions", "attr:conditions", "attr:intervention_names")


def _signals(rows: list[tuple[float, ...]]) -> Signals:
    values = np.array(rows, dtype=np.float64)
    return Signals(np.arange(len(values)), NAMES, tuple(signal_group(n) for n in NAMES), values)


# Trials 0-4 share the query's condition; trial 5 shares only its intervention (an intervention-aspect
# neighbour in another disease); the overall blend (whole text) puts it sixth, before four trials
# that share neither.
SIX = _signals([
    (0.90, 0.9, 0.1, 1, 0), (0.88, 0.9, 0.1, 1, 0), (0.86, 0.9, 0.1, 1, 0),
    (0.84, 0.9, 0.1, 1, 0), (0.82, 0.9, 0.1, 1, 0), (0.70, 0.1, 0.95, 0, 1),
    *[(0.50, 0.1, 0.1, 0, 0)] * 4,
])
TEXT = FusionBlend({"field:text": 1.0})


def test_weight_zero_is_the_base_order():
    _, base = TEXT.rank(SIX)
    components, order, brought = CoveringBlend(TEXT, 0.0).cover(SIX)
    assert order.tolist() == base.tolist() == list(range(10)) and brought == {}


def test_a_strong_neighbour_of_the_other_aspect_joins_the_head_and_says_why():
    _, order, brought = CoveringBlend(TEXT, 0.5).cover(SIX)
    assert order[:2].tolist() == [0, 5]  # after the best condition trial, the intervention one
    assert brought == {5: "intervention"}
    assert sorted(order.tolist()) == list(range(10))  # a re-ordering, nothing lost or repeated
    # the head only: beyond it the base order stands
    _, order, _ = CoveringBlend(TEXT, 0.5, head=1).cover(SIX)
    assert order.tolist() == list(range(10))


def test_unavailable_signals_count_as_the_lowest_not_as_an_error():
    values = SIX.values.copy()
    values[5, 0] = np.nan  # no whole-text cosine for the intervention trial
    values[:, 3] = np.nan  # no condition names anywhere
    holes = Signals(SIX.rows, SIX.names, SIX.groups, values)
    _, order, brought = CoveringBlend(TEXT, 0.5).cover(holes)
    assert sorted(order.tolist()) == list(range(10)) and set(brought.values()) <= {"condition", "intervention"}


def test_a_list_of_one_kind_keeps_its_order():
    same = _signals([(0.9 - i / 100, 0.9, 0.1, 1, 0) for i in range(6)])
    _, order, brought = CoveringBlend(TEXT, 0.5).cover(same)
    assert order.tolist() == list(range(6)) and brought == {}


def test_covering_blend_round_trips_and_refuses_bad_settings():
    blend = CoveringBlend(FusionBlend(), 0.25, fitted_on={"design": "fusion"})
    again = blend_from_dict(json.loads(json.dumps(blend.to_dict())))
    assert again == blend and again.fitted_on == {"design": "fusion"}
    for bad in ({"weight": 1.5}, {"weight": -0.1}, {"head": 0}, {"aspects": ("design",)}, {"aspects": ()}):
        with pytest.raises(InvalidParameter):
            CoveringBlend(FusionBlend(), **{"weight": 0.25, **bad})
    with pytest.raises(InvalidParameter, match="covering blend"):
        CoveringBlend(blend, 0.25)
    with pytest.raises(InvalidParameter, match="malformed"):
        blend_from_dict({"method": "covering", "weight": 0.25})


def test_choose_coverage_keeps_the_least_coverage_within_one_standard_error(ranker, index):
    from test_tuning import mesh_pairs
    from similarity.ranking.selection import query_signals

    queries = query_signals(ranker, mesh_pairs(index), random_negatives=5)
    base = FusionBlend()
    grid = (0.0, 0.25, 0.5, 1.0)
    weight, blend = choose_coverage(queries, base, grid)
    values = {w: np.array([criterion(base if w == 0 else CoveringBlend(base, w), q) for q in queries]) for w in grid}
    top = max(grid, key=lambda w: (values[w].mean(), -w))
    within = [w for w in grid if values[w].mean() >= values[top].mean()
              - (values[top] - values[w]).std(ddof=1) / np.sqrt(len(queries))]
    assert weight == min(within)
    assert (blend is base) if weight == 0 else (blend.weight == weight and "coverage_scores" in blend.fitted_on)
    # one weight is that weight, chosen on nothing
    assert choose_coverage(queries, base, (0.0,)) == (0.0, base)
    fixed = choose_coverage(queries, base, (0.25,))[1]
    assert isinstance(fixed, CoveringBlend) and fixed.weight == 0.25
    with pytest.raises(InvalidParameter, match="coverage weights"):
        choose_coverage(queries, base, (1.5,))


def test_fit_weights_coverage_option(index_dir, index, tmp_path, capsys):
    from test_tuning import mesh_pairs
    from similarity.cli import main

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("query_id\tcandidate_id\tlabel\n" + "".join(
        f"{q}\t{c}\t{label}\n" for q, cands in mesh_pairs(index).items() for c, label in cands.items()))
    out_file = tmp_path / "blend.json"
    assert main(["fit-weights", "--index", str(index_dir), "--pairs", str(pairs), "--structure", "fusion",
                 "--coverage", "0.25", "--dry-run", "--export", str(out_file)]) == 0
    assert "aspect coverage of the first 10 places (condition, intervention): weight 0.25, as given" in capsys.readouterr().out
    saved = blend_from_dict(json.loads(out_file.read_text()))
    assert isinstance(saved, CoveringBlend) and saved.weight == 0.25 and isinstance(saved.base, FusionBlend)
    for bad in ("2", "x", ","):
        assert main(["fit-weights", "--index", str(index_dir), "--pairs", str(pairs), "--coverage", bad, "--dry-run"]) != 0
        assert "--coverage takes weights between 0 and 1" in capsys.readouterr().err


def test_the_ranker_names_the_aspect_that_brought_a_trial(ranker, index):
    covering = ranker.with_blend(CoveringBlend(ranker.blend.base if isinstance(ranker.blend, CoveringBlend)
                                               else ranker.blend, 1.0), stored=False)
    seen = 0
    for trial in list(index.trials)[:20]:
        for item in covering.related(trial.nct_id, 10):
            if "aspect" in item.why:
                assert item.why["aspect"] in ("condition", "intervention")
                seen += 1
    assert seen  # weight 1: the head is the aspects' alone, some trial is brought by one
