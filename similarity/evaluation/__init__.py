"""Evaluation: related lists scored on labelled trial pairs, against baselines, with intervals.

:func:`evaluate` runs engines and :mod:`.baselines` (TF-IDF, BM25, dense, their fusion) on the same
queries (:mod:`.runs`, metrics by ranx); :func:`nested_cross_validation` measures the ranker's whole
design procedure on queries it never saw (:mod:`.cross_validation`).
"""

from .baselines import BASELINES, make_baseline
from .cross_validation import NestedResult, nested_cross_validation
from .runs import HEADLINE, EvaluationResult, bootstrap_interval, evaluate, read_pairs

__all__ = [
    "BASELINES",
    "EvaluationResult",
    "HEADLINE",
    "NestedResult",
    "bootstrap_interval",
    "evaluate",
    "make_baseline",
    "nested_cross_validation",
    "read_pairs",
]
