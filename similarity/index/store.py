"""Trial records kept on disk and read on demand, with the few attributes every query needs in RAM.

A loaded index used to hold every trial as Python objects: ~10 KB per trial, ~6 GB for the whole
registry. A served related list reads only the query's and the top ``k`` trials' records, so
:class:`TrialStore` parses a record from ``trials.jsonl`` when it is asked for (byte offsets in
RAM, a bounded cache of recent records), and :func:`trial_columns` keeps in compact arrays what
every query reads for many rows: the filterable attributes, the phase ordinal of the phase signal
and the lead sponsor of the near-duplicate check.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..exceptions import IndexMismatch
from ..ingest.trial import InterventionType, Phase, Status, StudyType, Trial, age_in_years, date_ordinal
from ._files import ReadOnlyFile

__all__ = ["RecordStore", "TrialStore", "RowLookup", "read_records", "trial_columns", "phase_ordinal", "CACHE_SIZE"]

CACHE_SIZE = 4096
"""Parsed records kept per store (the hot trials of a busy page)."""

_SCAN_BLOCK = 1 << 24

STATUSES = tuple(Status)
STUDY_TYPES = tuple(StudyType)
PHASES = tuple(Phase)
INTERVENTION_TYPES = tuple(InterventionType)
SEXES = ("ALL", "FEMALE", "MALE")

COLUMNS = ("nct_id", "status", "study_type", "phases", "intervention_types", "phase_ordinal", "sponsor",
           "sponsor_names", "min_age", "max_age", "sex", "start", "country_ptr", "country_codes", "country_names")
"""The compact columns of a build (a build saved before some of them is read once to add them)."""


def country_key(name: str) -> str:
    """How country names compare: case and spacing ignored (``"korea,  republic of"`` = ``"Korea, Republic of"``)."""
    return " ".join(str(name).split()).casefold()


def phase_ordinal(trial: Trial) -> float:
    """Mean ordinal of a trial's phases; -1 for N/A only; NaN when unknown."""
    ords = [p.ordinal for p in trial.phases or () if p.ordinal is not None]
    if ords:
        return float(np.mean(ords))
    return -1.0 if trial.phases and Phase.NA in trial.phases else float("nan")


def _code(value, values: tuple) -> int:
    return values.index(value) if value is not None else -1


def _bits(members, values: tuple) -> int:
    return sum(1 << values.index(m) for m in set(members or ()))


def trial_columns(trials: Sequence[Trial] | Iterator[Trial]) -> dict[str, np.ndarray]:
    """Compact per-row attributes of ``trials`` (a few dozen bytes per trial).

    ``nct_id`` (bytes), ``status`` and ``study_type`` (codes into the enums, -1 unknown),
    ``phases`` and ``intervention_types`` (bit sets over the enums), ``phase_ordinal`` (float32),
    ``sponsor`` (codes into ``sponsor_names``, -1 unknown), ``min_age`` and ``max_age`` (years,
    float32, NaN = no limit stated), ``sex`` (code into :data:`SEXES`, -1 unknown), ``start``
    (start date as a day ordinal, -1 unknown) and the location countries of row ``i`` as
    ``country_codes[country_ptr[i]:country_ptr[i + 1]]``, codes into ``country_names``.
    """
    ids, status, study, phases, itypes, ordinal, sponsor = [], [], [], [], [], [], []
    min_age, max_age, sex, start, country_ptr, country_codes = [], [], [], [], [0], []
    sponsors: dict[str, int] = {}
    countries: dict[str, int] = {}
    for t in trials:
        low, high = age_in_years(t.minimum_age), age_in_years(t.maximum_age)
        min_age.append(np.nan if low is None else low)
        max_age.append(np.nan if high is None else high)
        sex.append(SEXES.index(t.gender) if t.gender in SEXES else -1)
        day = date_ordinal(t.start_date) if t.start_date else None
        start.append(-1 if day is None else day)
        country_codes.extend(countries.setdefault(c, len(countries)) for c in dict.fromkeys(t.countries or ()))
        country_ptr.append(len(country_codes))
        ids.append(t.nct_id)
        status.append(_code(t.overall_status, STATUSES))
        study.append(_code(t.study_type, STUDY_TYPES))
        phases.append(_bits(t.phases, PHASES))
        itypes.append(_bits(t.intervention_types, INTERVENTION_TYPES))
        ordinal.append(phase_ordinal(t))
        sponsor.append(sponsors.setdefault(t.lead_sponsor, len(sponsors)) if t.lead_sponsor else -1)
    arrays = {"status": (status, np.int8), "study_type": (study, np.int8), "phases": (phases, np.uint32),
              "intervention_types": (itypes, np.uint32), "phase_ordinal": (ordinal, np.float32),
              "sponsor": (sponsor, np.int32), "min_age": (min_age, np.float32), "max_age": (max_age, np.float32),
              "sex": (sex, np.int8), "start": (start, np.int32), "country_ptr": (country_ptr, np.int64),
              "country_codes": (country_codes, np.int32)}
    return {
        "nct_id": np.array(ids, dtype=np.bytes_) if ids else np.zeros(0, dtype="S11"),
        **{name: np.array(values, dtype=dtype) for name, (values, dtype) in arrays.items()},
        "sponsor_names": np.array(list(sponsors), dtype=np.str_) if sponsors else np.zeros(0, dtype="U1"),
        "country_names": np.array(list(countries), dtype=np.str_) if countries else np.zeros(0, dtype="U1"),
    }


def column_mask(columns: Mapping[str, np.ndarray], name: str, value) -> np.ndarray:
    """Rows whose attribute ``name`` (``status``, ``study_type``, ``phase``, ``intervention_type``)
    holds ``value``, from the compact columns; ``country``: rows located in any of the countries
    whose :func:`country_key` is in ``value``."""
    if name == "status":
        return columns["status"] == STATUSES.index(value)
    if name == "study_type":
        return columns["study_type"] == STUDY_TYPES.index(value)
    if name == "phase":
        return (columns["phases"] & np.uint32(1 << PHASES.index(value))) != 0
    if name == "intervention_type":
        return (columns["intervention_types"] & np.uint32(1 << INTERVENTION_TYPES.index(value))) != 0
    if name == "country":
        names = columns["country_names"]
        keys = set(value)
        wanted = np.array([country_key(n) in keys for n in names], dtype=bool)
        ptr, codes = columns["country_ptr"], columns["country_codes"]
        rows = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
        mask = np.zeros(len(ptr) - 1, dtype=bool)
        mask[rows[wanted[codes]]] = True
        return mask
    raise KeyError(name)


class RowLookup(Mapping):
    """``nct_id -> row`` over a bytes array of IDs: 11 bytes and a sorted position per trial, where
    a dict of 0.6 million strings costs ~100 MB."""

    def __init__(self, ids: np.ndarray):
        self._ids = np.asarray(ids)
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._order]

    def _find(self, key) -> int:
        if not isinstance(key, str):
            return -1
        try:
            probe = np.array(key.encode("ascii"), dtype=self._ids.dtype)
        except (UnicodeEncodeError, ValueError):
            return -1
        if probe.tobytes().rstrip(b"\0") != key.encode("ascii"):  # longer than any stored ID
            return -1
        pos = int(np.searchsorted(self._sorted, probe))
        if pos < len(self._sorted) and self._sorted[pos] == probe:
            return int(self._order[pos])
        return -1

    def __getitem__(self, key) -> int:
        row = self._find(key)
        if row < 0:
            raise KeyError(key)
        return row

    def __contains__(self, key) -> bool:
        return self._find(key) >= 0

    def __iter__(self) -> Iterator[str]:
        return (i.decode("ascii") for i in self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def _line_offsets(path: Path) -> np.ndarray:
    """Start offsets of each line of ``path``, plus the file's length (scanned in 16 MB blocks)."""
    starts = [np.zeros(1, dtype=np.int64)]
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while block := fh.read(_SCAN_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A) + pos + 1
            starts.append(ends.astype(np.int64))
            pos += len(block)
    offsets = np.concatenate(starts)
    if offsets[-1] != size:  # no newline after the last record
        offsets = np.append(offsets, size)
    return offsets


def read_records(path: str | Path) -> Iterator[Trial]:
    """Every trial of an index's ``trials.jsonl``, in row order (records this package wrote)."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield Trial.from_dict(json.loads(line))


class RecordStore(Sequence[Trial]):
    """Trial records read one by one on demand: ``store[row]``, slices and negative rows; a
    subclass gives ``__len__`` and ``_get(row)`` (a cached read of one record)."""

    def _get(self, row: int) -> Trial:
        raise NotImplementedError

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} trials")
        return self._get(row)


class TrialStore(RecordStore):
    """The trials of a saved build, each parsed from its line of ``trials.jsonl`` on first access.

    Holds 8 bytes per trial (line offsets) plus up to ``cache_size`` parsed records. Reads use
    ``pread`` and the cache is thread-safe, so one store serves concurrent requests. The file of a
    build never changes; the store keeps it open, so a pruned build stays readable.

    Args:
        path: the ``trials.jsonl`` of a build.
        cache_size: parsed records kept (least recently used dropped first).
    """

    def __init__(self, path: str | Path, *, cache_size: int = CACHE_SIZE):
        self.path = Path(path)
        self._offsets = _line_offsets(self.path)
        self._file = ReadOnlyFile(self.path)
        self._get = functools.lru_cache(maxsize=cache_size)(self._read)

    def _read(self, row: int) -> Trial:
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        line = self._file.read(start, end)
        try:
            return Trial.from_dict(json.loads(line))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IndexMismatch(f"{self.path}: record {row + 1} is unreadable ({exc})") from None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[Trial]:
        """Every record in row order, read sequentially (not cached)."""
        return read_records(self.path)

    def close(self) -> None:
        self._file.close()
