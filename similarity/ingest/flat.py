"""Flat trial records (``trialsim-dev/trials.jsonl``, ``Trial.to_dict()`` output) -> ``Trial``.

A flat record holds the ``Trial`` fields under their own names, except ``phase``: one string such
as ``Phase 1/Phase 2`` or ``PHASE1/PHASE2`` (a ``phases`` list is accepted too). ``null`` means
unknown, lists included. The TrialSim bookkeeping keys (``page_cut``, ``*_truncated``) are ignored;
``source`` or ``source_path`` names the record's origin when the caller gives no other.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from ..exceptions import InvalidRecord
from .trial import Trial
from ._common import build_trial

__all__ = ["trial_from_flat", "is_flat"]

logger = logging.getLogger(__name__)

_FIELDS = frozenset(f.name for f in dataclasses.fields(Trial)) - {"phases", "source"}
_IGNORED = frozenset({"phase", "phases", "source", "source_path", "page_cut"})


def is_flat(doc: Any) -> bool:
    """Whether ``doc`` looks like one flat trial record."""
    return isinstance(doc, Mapping) and "nct_id" in doc


def trial_from_flat(doc: Mapping[str, Any], *, source: str | None = None) -> Trial:
    """Map one flat record onto a ``Trial``.

    Args:
        doc: the record.
        source: where it was read (file and line); defaults to the record's ``source`` or
            ``source_path``.

    Raises:
        InvalidRecord: no ``nct_id`` or a malformed one, a value of the wrong type, a field over
            the size limit.
    """
    if not isinstance(doc, Mapping):
        raise InvalidRecord(
            f"a record must be a JSON object, got {type(doc).__name__}", source=source
        )
    unknown = [
        k
        for k in doc
        if k not in _FIELDS
        and k not in _IGNORED
        and not (isinstance(k, str) and k.endswith("_truncated"))
    ]
    if unknown:
        where = source or doc.get("nct_id")
        logger.debug("%s: ignored keys %s", where, ", ".join(map(str, unknown)))
    fields = {name: doc.get(name) for name in _FIELDS}
    fields["phases"] = doc["phase"] if doc.get("phase") is not None else doc.get("phases")
    if source is None:
        origin = doc.get("source") or doc.get("source_path")
        source = origin if isinstance(origin, str) else None
    return build_trial(fields, source=source)
