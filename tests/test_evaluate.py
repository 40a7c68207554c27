"""Metrics checked against hand-computed values, and the pairs reader's errors."""

import pytest

from similarity import InvalidParameter, SourceError, read_pairs
from similarity.evaluation.runs import RERANK_METRICS, _metrics


def test_metrics_match_hand_computed_values():
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"z": 1}}
    runs = {"m": {"q1": {"a": 3, "b": 2, "c": 1}, "q2": {"x": 2, "z": 1}}}
    got = _metrics(qrels, runs, RERANK_METRICS)["m"]
    assert got["P@1"] == pytest.approx((1 + 0) / 2)
    assert got["R@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["MRR"] == pytest.approx((1 + 0.5) / 2)
    # q1: DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3); q2: DCG = 1/log2(3), IDCG = 1
    import math

    ndcg_q1 = 1.5 / (1 + 1 / math.log2(3))
    ndcg_q2 = 1 / math.log2(3)
    assert got["nDCG@5"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    # AP q1 = (1 + 2/3) / 2; AP q2 = 1/2
    assert got["MAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2, abs=1e-4)


def test_per_query_values_average_to_the_means():
    qrels = {"q1": {"a": 1, "c": 1}, "q2": {"z": 1}}
    runs = {"m": {"q1": {"a": 3, "b": 2, "c": 1}, "q2": {"x": 2, "z": 1}}}
    per_query = {}
    means = _metrics(qrels, runs, RERANK_METRICS, per_query)["m"]
    assert per_query["m"]["P@1"] == {"q1": 1.0, "q2": 0.0}
    assert per_query["m"]["MRR"] == {"q1": 1.0, "q2": 0.5}
    for metric, values in per_query["m"].items():
        assert sum(values.values()) / 2 == pytest.approx(means[metric], abs=1e-4)


def test_read_pairs(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("query_id\tcandidate_id\tlabel\nNCT1\tNCT2\t1\nNCT1\tNCT3\t0\n")
    assert read_pairs(path) == {"NCT1": {"NCT2": 1, "NCT3": 0}}


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\tb\tc\n", "header must be"),
        ("query_id\tcandidate_id\tlabel\nNCT1\tNCT2\tyes\n", "line 2"),
        ("query_id\tcandidate_id\tlabel\n", "no labelled pairs"),
    ],
)
def test_read_pairs_errors(tmp_path, content, message):
    path = tmp_path / "p.tsv"
    path.write_text(content)
    with pytest.raises(InvalidParameter, match=message):
        read_pairs(path)


def test_read_pairs_missing_file(tmp_path):
    with pytest.raises(SourceError, match="cannot read pairs file"):
        read_pairs(tmp_path / "nope.tsv")
