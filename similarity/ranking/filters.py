"""Registry filters on a related list: the attributes a registry user filters by.

Status, phase, intervention type and study type (any of the values given), the trial's location
countries (any of them, as the registry spells them, case and spacing ignored), recruiting only
(recruiting, not yet recruiting, enrolling by invitation), an age in years inside the trial's
eligible range, a sex the trial admits, and a start-date range. Filters combine with AND.

Unknown values follow what a registry user expects: a trial that states no minimum (maximum)
age has no lower (upper) limit, one that states no sex admits all; a trial without a start date
is dropped by a start-date filter, and one without a location by a country filter.
:meth:`Filters.mask` evaluates them on an index's compact columns; :meth:`Filters.matches` on
one :class:`~similarity.ingest.Trial` (the reference the tests hold the masks to).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Iterable, Mapping

import numpy as np

from ..exceptions import InvalidParameter
from ..index.store import SEXES, column_mask, country_key
from ..ingest import InterventionType, Phase, Status, StudyType, Trial, age_in_years, date_ordinal, parse_phases

__all__ = ["Filters", "RECRUITING_STATUSES", "MAX_AGE"]

RECRUITING_STATUSES: tuple[Status, ...] = (Status.RECRUITING, Status.NOT_YET_RECRUITING, Status.ENROLLING_BY_INVITATION)
"""What ``recruiting_only`` keeps: trials a patient can still join (the legacy spellings parse to these)."""

MAX_AGE = 150.0
"""The largest age in years a filter accepts."""

ENUM_FIELDS = ("status", "phase", "intervention_type", "study_type")


def _parse_all(parser, values: Iterable[str] | None) -> tuple:
    return tuple(dict.fromkeys(parser(v) for v in values or ()))


def _parse_date(name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date):
        return value.toordinal()
    ordinal = date_ordinal(str(value).strip())
    if ordinal is None:
        raise InvalidParameter(f"{name} must be a date YYYY-MM-DD, YYYY-MM or YYYY, got {value!r:.40}")
    return ordinal


def _as_list(values) -> list:
    return [values] if isinstance(values, str) else list(values or ())


@dataclasses.dataclass(frozen=True)
class Filters:
    """Keep only trials matching every given filter. Empty = no filter.

    Build it with :meth:`parse` from strings (CLI options, query parameters, JSON).
    ``start_after`` and ``start_before`` are inclusive proleptic Gregorian day ordinals.
    """

    status: tuple[Status, ...] = ()
    phase: tuple[Phase, ...] = ()
    intervention_type: tuple[InterventionType, ...] = ()
    study_type: tuple[StudyType, ...] = ()
    country: tuple[str, ...] = ()
    recruiting_only: bool = False
    age: float | None = None
    sex: str | None = None
    start_after: int | None = None
    start_before: int | None = None

    @classmethod
    def parse(cls, *, status=None, phase=None, intervention_type=None, study_type=None, country=None,
              recruiting_only: bool = False, age=None, sex=None, start_after=None, start_before=None) -> "Filters":
        """Build from strings in either registry spelling; raises InvalidParameter on bad values.

        Args:
            status, phase, intervention_type, study_type: registry values (current or legacy spelling).
            country: location country names as the registry spells them ("United States", "Korea,
                Republic of"), case-insensitive; a trial in any of them passes.
            recruiting_only: keep recruiting, not yet recruiting and enrolling-by-invitation trials.
            age: years (a number from 0 to :data:`MAX_AGE`); keeps trials whose eligible age range holds it.
            sex: ``female`` or ``male``; keeps trials that admit it (``ALL`` admits both).
            start_after, start_before: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` (inclusive; a
                month or year means its first day for ``start_after`` and its last for
                ``start_before``); an empty range keeps nothing.
        """
        if age is not None and not isinstance(age, bool):
            try:
                age = float(age)
            except (TypeError, ValueError):
                age = float("nan")
            if not (math.isfinite(age) and 0 <= age <= MAX_AGE):
                raise InvalidParameter(f"age must be a number of years from 0 to {MAX_AGE:g}")
        elif isinstance(age, bool):
            raise InvalidParameter(f"age must be a number of years from 0 to {MAX_AGE:g}")
        if sex is not None:
            key = str(sex).strip().upper()
            if key not in ("FEMALE", "MALE"):
                raise InvalidParameter(f"sex must be female or male, got {sex!r:.40}")
            sex = key
        after = _parse_date("start_after", start_after)
        before = _parse_date("start_before", start_before)
        if before is not None and isinstance(start_before, str) and len(start_before.strip()) < 10:
            before = _period_end(start_before.strip())
        countries = [str(c) for c in _as_list(country)]
        return cls(
            status=_parse_all(Status.parse, _as_list(status)),
            phase=tuple(dict.fromkeys(p for v in _as_list(phase) for p in parse_phases(v) or ())),
            intervention_type=_parse_all(InterventionType.parse, _as_list(intervention_type)),
            study_type=_parse_all(StudyType.parse, _as_list(study_type)),
            country=tuple(dict.fromkeys(country_key(c) for c in countries)),
            recruiting_only=bool(recruiting_only),
            age=age,
            sex=sex,
            start_after=after,
            start_before=before,
        )

    def __bool__(self) -> bool:
        listed = (self.status, self.phase, self.intervention_type, self.study_type, self.country, self.recruiting_only)
        return any(listed) or any(v is not None for v in (self.age, self.sex, self.start_after, self.start_before))

    def matches(self, trial: Trial) -> bool:
        """Whether ``trial`` passes (the record-level reference of :meth:`mask`)."""
        if self.status and trial.overall_status not in self.status:
            return False
        if self.phase and not set(trial.phases or ()) & set(self.phase):
            return False
        if self.intervention_type and not set(trial.intervention_types or ()) & set(self.intervention_type):
            return False
        if self.study_type and trial.study_type not in self.study_type:
            return False
        if self.country and not {country_key(c) for c in trial.countries or ()} & set(self.country):
            return False
        if self.recruiting_only and trial.overall_status not in RECRUITING_STATUSES:
            return False
        if self.age is not None:
            low, high = age_in_years(trial.minimum_age), age_in_years(trial.maximum_age)
            if (low is not None and self.age < low) or (high is not None and self.age > high):
                return False
        if self.sex is not None and trial.gender not in (None, "ALL", self.sex):
            return False
        if self.start_after is not None or self.start_before is not None:
            start = date_ordinal(trial.start_date) if trial.start_date else None
            if start is None:
                return False
            if (self.start_after is not None and start < self.start_after) or (
                self.start_before is not None and start > self.start_before
            ):
                return False
        return True

    def mask(self, columns: Mapping[str, np.ndarray], enum_mask=None) -> np.ndarray | None:
        """Rows of an index's compact columns that pass, as a boolean array (None: no filter).

        ``enum_mask(name, value)`` gives the mask of one enum value (a caller's cache); by default
        :func:`~similarity.index.store.column_mask`.
        """
        if not self:
            return None
        enum_mask = enum_mask or (lambda name, value: column_mask(columns, name, value))
        keep = np.ones(len(columns["nct_id"]), dtype=bool)
        for name in ENUM_FIELDS:
            values = getattr(self, name)
            if values:
                keep &= np.logical_or.reduce([enum_mask(name, v) for v in values])
        if self.recruiting_only:
            keep &= np.logical_or.reduce([enum_mask("status", s) for s in RECRUITING_STATUSES])
        if self.country:
            keep &= column_mask(columns, "country", self.country)
        if self.age is not None:
            low, high = columns["min_age"], columns["max_age"]
            keep &= ~(low > self.age) & ~(high < self.age)  # NaN (no limit) compares False
        if self.sex is not None:
            keep &= np.isin(columns["sex"], [-1, SEXES.index("ALL"), SEXES.index(self.sex)])
        if self.start_after is not None or self.start_before is not None:
            start = columns["start"]
            keep &= start >= 0
            if self.start_after is not None:
                keep &= start >= self.start_after
            if self.start_before is not None:
                keep &= start <= self.start_before
        return keep

    def to_dict(self) -> dict[str, Any]:
        """The filters given, as JSON values (enum values, ISO dates)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value in ((), None, False):
                continue
            if f.name in ("start_after", "start_before"):
                value = dt.date.fromordinal(value).isoformat()
            elif isinstance(value, tuple):
                value = [getattr(v, "value", v) for v in value]
            out[f.name] = value
        return out


def _period_end(text: str) -> int | None:
    """The last day of the month (``YYYY-MM``) or year (``YYYY``) that ``text`` names."""
    parts = text.split("-")
    try:
        year = int(parts[0])
        if len(parts) == 1:
            return dt.date(year, 12, 31).toordinal()
        month = int(parts[1])
        first_next = dt.date(year + month // 12, month % 12 + 1, 1)
        return first_next.toordinal() - 1
    except (ValueError, IndexError):
        return None
