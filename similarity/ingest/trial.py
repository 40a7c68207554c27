"""The normalised ``Trial`` record and the registry's enumerations.

Every loader produces ``Trial`` objects; nothing downstream knows which format a trial came from.
Enumerations use the current API's spellings (``ACTIVE_NOT_RECRUITING``, ``PHASE1``) as their
values and accept the legacy ones (``Active, not recruiting``, ``Phase 1/Phase 2``) when parsed.
``None`` always means *unknown*: a loader never invents a value that the record does not hold.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from enum import Enum
from typing import Any, Iterable

from ..exceptions import InvalidParameter

__all__ = [
    "Status",
    "Phase",
    "InterventionType",
    "StudyType",
    "Intervention",
    "Trial",
    "parse_phases",
    "format_phases",
    "NCT_ID_PATTERN",
    "age_in_years",
    "date_ordinal",
]

NCT_ID_PATTERN = re.compile(r"^NCT[0-9]{8}\Z")

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(year|month|week|day|hour|minute)s?\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"year": 1.0, "month": 1 / 12, "week": 7 / 365.25, "day": 1 / 365.25, "hour": 1 / 8766,
                   "minute": 1 / 525960}
_ISO_DAY = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def age_in_years(age: str | None) -> float | None:
    """A registry age (``"18 Years"``, ``"6 Months"``, ``"2 Weeks"``) in years; None if absent or unreadable."""
    match = _AGE.match(age) if age else None
    if not match:
        return None
    return float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).lower()]


def date_ordinal(date: str | None) -> int | None:
    """An ISO date ``YYYY-MM-DD`` (or ``YYYY-MM``, ``YYYY``: the first day) as a day ordinal;
    None if absent or not such a date."""
    match = _ISO_DAY.match(date.strip()) if date else None
    if not match:
        return None
    year, month, day = int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1)
    try:
        return _dt.date(year, month, day).toordinal()
    except ValueError:
        return None  # \d takes any Unicode digit; $ a trailing newline


def _key(value: str) -> str:
    """Reduce any spelling to an upper-case key: ``'Active, not recruiting'`` -> ``ACTIVE_NOT_RECRUITING``."""
    return re.sub(r"[^A-Z0-9]+", "_", value.strip().upper()).strip("_")


class _RegistryEnum(str, Enum):
    """An enumeration whose members parse from both the legacy and the current spellings."""

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {}

    @classmethod
    def parse(cls, value: "str | _RegistryEnum") -> "_RegistryEnum":
        """Return the member named by ``value`` in any registry spelling.

        Raises:
            InvalidParameter: ``value`` names no member; the message lists the allowed values.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise InvalidParameter(
                f"{cls.__name__} must be a string, got {type(value).__name__}"
            )
        key = _key(value)
        key = cls._aliases().get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InvalidParameter(
                f"unknown {cls.__name__} {value!r}; allowed values: {allowed}"
            ) from None

    def __str__(self) -> str:
        return self.value


class Status(_RegistryEnum):
    """Overall recruitment status."""

    NOT_YET_RECRUITING = "NOT_YET_RECRUITING"
    RECRUITING = "RECRUITING"
    ENROLLING_BY_INVITATION = "ENROLLING_BY_INVITATION"
    ACTIVE_NOT_RECRUITING = "ACTIVE_NOT_RECRUITING"
    SUSPENDED = "SUSPENDED"
    TERMINATED = "TERMINATED"
    COMPLETED = "COMPLETED"
    WITHDRAWN = "WITHDRAWN"
    UNKNOWN = "UNKNOWN"
    AVAILABLE = "AVAILABLE"
    NO_LONGER_AVAILABLE = "NO_LONGER_AVAILABLE"
    TEMPORARILY_NOT_AVAILABLE = "TEMPORARILY_NOT_AVAILABLE"
    APPROVED_FOR_MARKETING = "APPROVED_FOR_MARKETING"
    WITHHELD = "WITHHELD"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"UNKNOWN_STATUS": "UNKNOWN"}

    @property
    def is_open(self) -> bool:
        """Whether a patient could still join (or soon join) the trial."""
        return self in (
            Status.NOT_YET_RECRUITING,
            Status.RECRUITING,
            Status.ENROLLING_BY_INVITATION,
            Status.AVAILABLE,
        )


class Phase(_RegistryEnum):
    """One phase of a trial; a trial may list two (``PHASE1/PHASE2``)."""

    EARLY_PHASE1 = "EARLY_PHASE1"
    PHASE1 = "PHASE1"
    PHASE2 = "PHASE2"
    PHASE3 = "PHASE3"
    PHASE4 = "PHASE4"
    NA = "NA"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {
            "PHASE_0": "EARLY_PHASE1",
            "PHASE0": "EARLY_PHASE1",
            "EARLY_PHASE_1": "EARLY_PHASE1",
            "PHASE_1": "PHASE1",
            "PHASE_2": "PHASE2",
            "PHASE_3": "PHASE3",
            "PHASE_4": "PHASE4",
            "N_A": "NA",
            "NOT_APPLICABLE": "NA",
        }

    @property
    def ordinal(self) -> float | None:
        """Position on the development path (early phase 1 = 0.5 ... phase 4 = 4); ``None`` for N/A."""
        return {
            Phase.EARLY_PHASE1: 0.5,
            Phase.PHASE1: 1.0,
            Phase.PHASE2: 2.0,
            Phase.PHASE3: 3.0,
            Phase.PHASE4: 4.0,
        }.get(self)


class InterventionType(_RegistryEnum):
    """Type of one intervention."""

    DRUG = "DRUG"
    DEVICE = "DEVICE"
    BIOLOGICAL = "BIOLOGICAL"
    PROCEDURE = "PROCEDURE"
    RADIATION = "RADIATION"
    BEHAVIORAL = "BEHAVIORAL"
    GENETIC = "GENETIC"
    DIETARY_SUPPLEMENT = "DIETARY_SUPPLEMENT"
    COMBINATION_PRODUCT = "COMBINATION_PRODUCT"
    DIAGNOSTIC_TEST = "DIAGNOSTIC_TEST"
    OTHER = "OTHER"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"BIOLOGIC": "BIOLOGICAL", "PROCEDURE_SURGERY": "PROCEDURE"}


class StudyType(_RegistryEnum):
    """Study type; the legacy ``Observational [Patient Registry]`` is observational."""

    INTERVENTIONAL = "INTERVENTIONAL"
    OBSERVATIONAL = "OBSERVATIONAL"
    EXPANDED_ACCESS = "EXPANDED_ACCESS"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return {"OBSERVATIONAL_PATIENT_REGISTRY": "OBSERVATIONAL"}


def parse_phases(value: "str | Iterable[str] | None") -> tuple[Phase, ...] | None:
    """Parse ``'Phase 1/Phase 2'``, ``'PHASE1|PHASE2'`` or ``['PHASE1', 'PHASE2']`` into phases.

    Returns ``None`` for a missing value. Raises :class:`InvalidParameter` for an unknown phase.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = re.sub(r"\bN\s*/\s*A\b", "NA", value, flags=re.IGNORECASE)
        parts = re.split(r"[/|,]", value)
    else:
        parts = list(value)
    parts = [p for p in (str(p).strip() for p in parts) if p]
    if not parts:
        return None
    phases = tuple(dict.fromkeys(Phase.parse(p) for p in parts))
    return tuple(sorted(phases, key=lambda p: list(Phase).index(p)))


def format_phases(phases: "tuple[Phase, ...] | None") -> str | None:
    """Format phases as on a registry page: ``PHASE1/PHASE2``."""
    if not phases:
        return None
    return "/".join(p.value for p in phases)


@dataclasses.dataclass(frozen=True)
class Intervention:
    """One intervention: its type (``None`` when unknown) and name."""

    type: InterventionType | None
    name: str


@dataclasses.dataclass(frozen=True)
class Trial:
    """One clinical trial, normalised from any source format.

    Text and list fields are ``None`` when the source did not say; an empty tuple means the source
    said "none". ``source`` names where the record was read (file and member), for messages.
    """

    nct_id: str
    brief_title: str | None = None
    official_title: str | None = None
    acronym: str | None = None
    org_study_id: str | None = None
    lead_sponsor: str | None = None
    sponsor_class: str | None = None
    brief_summary: str | None = None
    detailed_description: str | None = None
    overall_status: Status | None = None
    why_stopped: str | None = None
    start_date: str | None = None
    completion_date: str | None = None
    phases: tuple[Phase, ...] | None = None
    study_type: StudyType | None = None
    allocation: str | None = None
    intervention_model: str | None = None
    primary_purpose: str | None = None
    masking: str | None = None
    observational_model: str | None = None
    time_perspective: str | None = None
    primary_outcomes: tuple[str, ...] | None = None
    enrollment: int | None = None
    conditions: tuple[str, ...] | None = None
    keywords: tuple[str, ...] | None = None
    interventions: tuple[Intervention, ...] | None = None
    eligibility_criteria: str | None = None
    gender: str | None = None
    minimum_age: str | None = None
    maximum_age: str | None = None
    healthy_volunteers: bool | None = None
    condition_mesh: tuple[str, ...] | None = None
    intervention_mesh: tuple[str, ...] | None = None
    countries: tuple[str, ...] | None = None
    source: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.nct_id, str) or not NCT_ID_PATTERN.match(self.nct_id):
            raise InvalidParameter(
                f"nct_id must look like NCT followed by 8 digits, got {self.nct_id!r}"
            )

    @property
    def title(self) -> str:
        """The title a list shows: the brief title, else the official title, else the NCT ID."""
        return self.brief_title or self.official_title or self.nct_id

    @property
    def phase(self) -> str | None:
        """Phases as a page shows them (``PHASE1/PHASE2``), ``None`` when unknown."""
        return format_phases(self.phases)

    @property
    def intervention_types(self) -> tuple[InterventionType, ...] | None:
        """The distinct intervention types, ``None`` when the interventions are unknown."""
        if self.interventions is None:
            return None
        return tuple(dict.fromkeys(i.type for i in self.interventions if i.type is not None))

    @property
    def intervention_names(self) -> tuple[str, ...] | None:
        if self.interventions is None:
            return None
        return tuple(i.name for i in self.interventions)

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready record (the keys of ``trialsim-dev/trials.jsonl``), current enum spellings."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "phases":
                out["phase"] = self.phase
            elif field.name == "interventions":
                out["interventions"] = (
                    None
                    if value is None
                    else [{"type": i.type.value if i.type else None, "name": i.name} for i in value]
                )
            elif isinstance(value, Enum):
                out[field.name] = value.value
            elif isinstance(value, tuple):
                out[field.name] = list(value)
            else:
                out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Trial":
        """The inverse of :meth:`to_dict`, for records this package wrote (an index's
        ``trials.jsonl``): no spelling variants, so ~10x faster than the flat-record loader.
        Input from elsewhere goes through :func:`similarity.ingest.trial_from_document`."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name == "phases":
                phase = record.get("phase")
                values["phases"] = tuple(Phase(p) for p in phase.split("/")) if phase else None
                continue
            value = record.get(field.name)
            if value is None:
                continue
            if field.name == "interventions":
                value = tuple(
                    Intervention(InterventionType(i["type"]) if i.get("type") else None, i["name"]) for i in value
                )
            elif isinstance(value, list):
                value = tuple(value)
            values[field.name] = value
        for name, enum in (("overall_status", Status), ("study_type", StudyType)):
            if name in values:
                values[name] = enum(values[name])
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The fields a related list shows: NCT ID, title, status and phase."""
        return {
            "nct_id": self.nct_id,
            "title": self.title,
            "status": self.overall_status.value if self.overall_status else None,
            "phase": self.phase,
        }
