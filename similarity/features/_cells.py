"""Table cells shared by the featurizers: a 2-D object table, and what counts as a missing cell."""

from __future__ import annotations

import numpy as np

from ..exceptions import InvalidParameter


def as_cells(X) -> np.ndarray:
    table = np.asarray(X, dtype=object)
    if table.ndim != 2:
        raise InvalidParameter(f"expected a 2-D table of fields, got an array of shape {table.shape}")
    return table


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )
