"""The registry's CSV export (clinicaltrials.gov search -> Download -> CSV) -> ``Trial``.

Columns used: ``NCT Number``, ``Study Title`` (the brief title), ``Acronym``, ``Study Status``,
``Brief Summary``, ``Conditions``, ``Interventions`` (``DRUG: name|BIOLOGICAL: name``),
``Primary Outcome Measures``, ``Sponsor``, ``Funder Type`` (the sponsor class), ``Sex``, ``Phases``,
``Enrollment``, ``Study Type``, ``Study Design`` (``Allocation: RANDOMIZED|Masking: NONE|...``),
``Other IDs`` (the first is the sponsor's own study ID), ``Start Date``, ``Completion Date`` and
``Locations`` (``facility, city, state, zip, country|...``).

The export cannot tell an empty list from a missing one, so an empty cell reads as ``None``
(unknown), as for the API, which leaves empty lists out. It holds no keywords, MeSH terms, official
title, detailed description, eligibility criteria or age limits (its ``Age`` column is the age
groups ``CHILD, ADULT, OLDER_ADULT``): those fields stay ``None``.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from typing import IO, Iterator

from ..exceptions import InvalidRecord, SourceError
from .trial import NCT_ID_PATTERN, Trial
from ._common import build_trial

__all__ = ["iter_csv", "trial_from_row"]

logger = logging.getLogger(__name__)

_ID_COLUMN = "NCT Number"

_COLUMNS = {
    "nct_id": _ID_COLUMN,
    "brief_title": "Study Title",
    "acronym": "Acronym",
    "overall_status": "Study Status",
    "brief_summary": "Brief Summary",
    "lead_sponsor": "Sponsor",
    "sponsor_class": "Funder Type",
    "gender": "Sex",
    "enrollment": "Enrollment",
    "study_type": "Study Type",
    "start_date": "Start Date",
    "completion_date": "Completion Date",
}

_DESIGN_KEYS = {
    "Allocation": "allocation",
    "Intervention Model": "intervention_model",
    "Masking": "masking",
    "Primary Purpose": "primary_purpose",
    "Observational Model": "observational_model",
    "Time Perspective": "time_perspective",
}

_TYPED_NAME = re.compile(r"^([A-Z][A-Z_]*):\s*(.*)$", re.DOTALL)

# The tail of the registry's country names that hold a comma ("Korea, Republic of").
_COUNTRY_TAIL = re.compile(
    r"^(?:the\b|republic of|islamic republic of|democratic people's republic of|"
    r"federated states of|united republic of|plurinational state of|bolivarian republic of|"
    r"province of china|occupied|u\.s\.|british)",
    re.IGNORECASE,
)


def _split(cell: str | None) -> list[str] | None:
    """A ``|``-separated cell as a list; an empty cell is ``None``."""
    if cell is None or not cell.strip():
        return None
    return [part for part in (p.strip() for p in cell.split("|")) if part]


def _interventions(cell: str | None) -> list[dict[str, str | None]] | None:
    parts = _split(cell)
    if parts is None:
        return None
    out = []
    for part in parts:
        match = _TYPED_NAME.match(part)
        out.append(
            {"type": match.group(1), "name": match.group(2)}
            if match
            else {"type": None, "name": part}
        )
    return out


def _outcome_measure(item: str) -> str:
    # Each item reads "measure, description, time frame"; the measure is taken to end at the first
    # comma, which cuts the few measures that hold a comma themselves.
    return item.split(", ", 1)[0].rstrip(",")


def _country(location: str) -> str:
    parts = [p.strip() for p in location.split(", ")]
    if len(parts) > 1 and _COUNTRY_TAIL.match(parts[-1]):
        return f"{parts[-2]}, {parts[-1]}"
    return parts[-1]


def trial_from_row(row: dict[str, str], *, source: str | None = None) -> Trial:
    """Map one row of the export (a ``csv.DictReader`` row) onto a ``Trial``.

    Raises:
        InvalidRecord: no NCT ID or a malformed one, a field over the size limit.
    """
    fields: dict[str, object] = {field: row.get(column) for field, column in _COLUMNS.items()}
    fields["phases"] = row.get("Phases")
    fields["conditions"] = _split(row.get("Conditions"))
    fields["interventions"] = _interventions(row.get("Interventions"))
    outcomes = _split(row.get("Primary Outcome Measures"))
    fields["primary_outcomes"] = (
        None if outcomes is None else [_outcome_measure(o) for o in outcomes]
    )
    other_ids = _split(row.get("Other IDs"))
    fields["org_study_id"] = other_ids[0] if other_ids else None
    locations = _split(row.get("Locations"))
    fields["countries"] = None if locations is None else [_country(loc) for loc in locations]
    for part in _split(row.get("Study Design")) or ():
        key, _, value = part.partition(":")
        field = _DESIGN_KEYS.get(key.strip())
        if field is None:
            logger.debug("%s: unknown study design item %r", source, part)
        else:
            fields[field] = value
    return build_trial(fields, source=source)


def _decoded_lines(stream: IO[bytes], bad: set[int]) -> Iterator[str]:
    """Decode line by line, so one bad byte spoils its own row only; note the lines that fail."""
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield raw.decode("utf-8", errors="replace")


def iter_csv(stream: IO[bytes], *, source: str) -> Iterator[Trial | InvalidRecord]:
    """Read an export row by row, yielding a ``Trial`` or the ``InvalidRecord`` of each row.

    A row with invalid UTF-8 is invalid; a CSV syntax error ends the file (the reader cannot find
    the next row reliably) after yielding its ``InvalidRecord``.

    Raises:
        SourceError: the file has no ``NCT Number`` column, so is no registry export.
    """
    bad: set[int] = set()
    reader = csv.DictReader(_decoded_lines(stream, bad))
    row_number = 0
    try:
        if reader.fieldnames is None or _ID_COLUMN not in reader.fieldnames:
            raise SourceError(f"{source}: not a registry CSV export (no {_ID_COLUMN!r} column)")
        last_line = reader.line_num
        for row_number, row in enumerate(reader, start=1):
            where = f"{source}, row {row_number}"
            lines, last_line = range(last_line + 1, reader.line_num + 1), reader.line_num
            if bad.intersection(lines):
                nct_id = row.get(_ID_COLUMN)
                record = nct_id if nct_id and NCT_ID_PATTERN.match(nct_id) else None
                yield InvalidRecord("invalid UTF-8", source=where, record=record)
                continue
            try:
                yield trial_from_row(row, source=where)
            except InvalidRecord as error:
                yield error
    except csv.Error as error:
        yield InvalidRecord(
            f"malformed CSV ({error}); the rest of the file is skipped",
            source=f"{source}, row {row_number + 1}",
        )
