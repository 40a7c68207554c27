"""Sources split into parts that separate processes read, and their results gathered back in order.

A distributed build (:mod:`similarity.index.ray_build`) reads the parts in parallel; gathering
their results in part order and through :func:`collect_trials` gives exactly the trials, skipped
records and duplicates :func:`~similarity.ingest.load_trials` gives for the same sources. A part is
a whole file, or a run of members of a zip (a registry download is one zip of ~500,000 XML files).
A record crosses processes as a plain tuple: an exception with keyword arguments does not survive
pickling, and a :class:`Trial` does.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

from ..exceptions import InvalidRecord, SourceError
from .sources import _ZIP_OPEN_ERRORS, LoadReport, _expand, _iter_file, _iter_zip, _latest, _tally, _zip_members
from .trial import Trial

__all__ = ["SourcePart", "source_parts", "read_part", "collect_trials", "DEFAULT_MEMBERS_PER_PART"]

DEFAULT_MEMBERS_PER_PART = 500
"""Zip members per part: a few seconds of parsing, so that parts spread over the workers."""

Record = tuple
"""``("trial", Trial)``, ``("invalid", reason, source, record)`` or ``("source", message)``."""


@dataclasses.dataclass(frozen=True)
class SourcePart:
    """A file, or the named members of a zip (``members`` None: the whole file)."""

    path: str
    members: tuple[str, ...] | None = None


def source_parts(
    sources: Iterable[str | os.PathLike[str]], *, members_per_part: int = DEFAULT_MEMBERS_PER_PART
) -> list[SourcePart]:
    """The parts of ``sources``, in the order :func:`~similarity.ingest.load_trials` reads them.

    Raises:
        SourceError: a source is missing, unreadable or of an unknown type.
    """
    if members_per_part < 1:
        raise ValueError(f"members_per_part must be >= 1, got {members_per_part}")
    parts: list[SourcePart] = []
    for path in _expand(sources):
        if path.suffix.lower() != ".zip":
            parts.append(SourcePart(str(path)))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in _zip_members(archive)]
        except _ZIP_OPEN_ERRORS as error:
            raise SourceError(f"cannot read zip {path}: {error}") from None
        for start in range(0, len(names), members_per_part):
            parts.append(SourcePart(str(path), tuple(names[start : start + members_per_part])))
    return parts


def read_part(part: SourcePart) -> Iterator[Record]:
    """The records of one part, in order, as picklable tuples (a source error ends the part)."""
    path = Path(part.path)
    try:
        results = _iter_file(path) if part.members is None else _iter_zip(path, frozenset(part.members))
        for result in results:
            if isinstance(result, InvalidRecord):
                yield ("invalid", result.reason, result.source, result.record)
            else:
                yield ("trial", result)
    except SourceError as error:
        yield ("source", str(error))


def _results(records: Iterable[Record]) -> Iterator[Trial | InvalidRecord]:
    for record in records:
        if record[0] == "trial":
            yield record[1]
        elif record[0] == "invalid":
            yield InvalidRecord(record[1], source=record[2], record=record[3])
        else:
            raise SourceError(record[1])


def collect_trials(
    records: Iterable[Record], *, strict: bool = False, report: LoadReport | None = None
) -> list[Trial]:
    """One trial per NCT ID from the records of all parts in order, as ``load_trials`` returns them.

    Raises:
        SourceError: a part could not be read.
        InvalidRecord: in strict mode, the first record that cannot become a trial.
    """
    report = LoadReport() if report is None else report
    return _latest(_tally(_results(records), strict=strict, report=report), report)
