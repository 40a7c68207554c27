"""Nested, query-grouped cross-validation of the whole ranker-design procedure.

:func:`nested_cross_validation` runs :func:`~similarity.ranking.selection.select_design` (choose a
design by inner cross-validation, fit it) inside each outer training fold, so an outer test query
never reaches any choice: not the weights, not ``C``, not the design. Its figures estimate how the
shipped procedure does on queries it has never seen.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold

from ..exceptions import InvalidParameter
from ..ranking import Blend, Ranker
from ..ranking.selection import COVERAGE_WEIGHTS, DEFAULT_DESIGNS, QuerySignals, Selection, select_design

__all__ = ["NestedResult", "nested_cross_validation"]


@dataclasses.dataclass
class NestedResult:
    """Outer test query -> the blend chosen and fitted without it, and which design that was."""

    blends: dict[str, Blend]
    designs: dict[str, str]
    folds: list[tuple[tuple[str, ...], Selection]]
    """Per outer fold: its test queries and the selection made on the other queries."""

    def chosen(self) -> Counter:
        """How many outer folds chose each design."""
        return Counter(selection.design for _, selection in self.folds)

    def engine(self, ranker: Ranker) -> Callable[[str], Ranker]:
        """``query_id -> Ranker`` with the blend chosen and fitted without that query (an
        engine for :func:`~similarity.evaluation.evaluate`)."""
        return lambda query_id: ranker.with_blend(self.blends.get(query_id))


def nested_cross_validation(
    queries: Sequence[QuerySignals],
    designs: Sequence[str] = DEFAULT_DESIGNS,
    *,
    n_splits: int = 10,
    inner_splits: int = 4,
    coverage: Sequence[float] = COVERAGE_WEIGHTS,
) -> NestedResult:
    """Run :func:`select_design` inside each of ``n_splits`` outer query-grouped folds.

    Each outer test query gets the blend that the selection chose and fitted on the other folds'
    queries only.
    """
    if len(queries) < 3:
        raise InvalidParameter("nested cross-validation needs at least 3 labelled queries")
    n_splits = min(n_splits, len(queries))
    if n_splits < 2:
        raise InvalidParameter(f"n_splits must be >= 2, got {n_splits}")
    groups = np.array([q.query_id for q in queries])
    blends, names, folds = {}, {}, []
    for train, test in GroupKFold(n_splits=n_splits).split(groups, groups=groups):
        selection = select_design([queries[i] for i in train], designs, n_splits=inner_splits,
                                  coverage=coverage)
        test_ids = tuple(str(groups[i]) for i in test)
        for q in test_ids:
            blends[q] = selection.blend
            names[q] = selection.design
        folds.append((test_ids, selection))
    return NestedResult(blends, names, folds)
