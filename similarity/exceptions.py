"""Exceptions raised by related-trials, one small tree over the builtins.

The CLI turns each into a one-line message and a non-zero exit; the HTTP service maps them to
status codes in one place (``similarity.service.app``).
"""

from __future__ import annotations

__all__ = [
    "RelatedTrialsError",
    "TrialNotFound",
    "InvalidRecord",
    "SourceError",
    "IndexMismatch",
    "IndexNotFound",
    "InvalidParameter",
]


class RelatedTrialsError(Exception):
    """Base class of every error this package raises on purpose."""


class TrialNotFound(RelatedTrialsError, KeyError):
    """An NCT ID that the index does not hold."""

    def __init__(self, nct_id: str):
        self.nct_id = nct_id
        super().__init__(nct_id)

    def __str__(self) -> str:
        return f"trial {self.nct_id!r} is not in the index"


class InvalidRecord(RelatedTrialsError, ValueError):
    """One record of a source that cannot become a Trial (no NCT ID, malformed, hostile)."""

    def __init__(self, message: str, *, source: str | None = None, record: str | None = None):
        self.source = source
        self.record = record
        self.reason = message
        where = ", ".join(p for p in (source, f"record {record}" if record else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(RelatedTrialsError, OSError):
    """A source path that cannot be read at all (missing, unknown format, unreadable zip)."""


class IndexNotFound(RelatedTrialsError, FileNotFoundError):
    """A directory that holds no saved index."""


class IndexMismatch(RelatedTrialsError, ValueError):
    """A saved index built with another model, layout or format version than asked for."""


class InvalidParameter(RelatedTrialsError, ValueError):
    """A parameter value outside its allowed set, named with the allowed values."""
