"""Field normalisation shared by every loader: one raw field dict in, one ``Trial`` out.

Each format module only plucks values out of its document and hands them to :func:`build_trial`
under the ``Trial`` field names. Cleaning, vocabularies and the checks live here once, so the same
trial read from legacy XML, API v2 JSON, the CSV export or a flat record becomes the same ``Trial``:

- text: ``\\r`` dropped, trailing blanks and runs of blank lines removed; one-line fields (titles,
  names, list items) have every run of whitespace collapsed to one space; ``""`` becomes ``None``.
  A text field over :data:`MAX_FIELD_CHARS` characters makes the record invalid.
- enumerations (status, phases, study type, intervention types) go through the ``parse`` methods of
  :mod:`similarity.ingest.trial`; the design fields, sex and sponsor class are mapped onto the current
  API's spellings (``Parallel Assignment`` -> ``PARALLEL``,
  ``Double (Participant, Investigator)`` -> ``DOUBLE``, ``U.S. Fed`` -> ``FED``). A value outside
  the vocabulary keeps the record, sets the field to ``None`` and logs a warning.
- dates become ISO (``July 30, 1998`` -> ``1998-07-30``, ``January 2004`` -> ``2004-01``).

Every step is idempotent: ``Trial.to_dict()`` read back through the flat loader is the same trial.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from ..exceptions import InvalidParameter, InvalidRecord
from .trial import (
    NCT_ID_PATTERN,
    Intervention,
    InterventionType,
    Status,
    StudyType,
    Trial,
    parse_phases,
)

logger = logging.getLogger(__name__)

#: Longest text field accepted, in characters; the largest real field is a few tens of thousands.
MAX_FIELD_CHARS = 1_000_000

#: Longest single document (one XML file, one JSON file or zip member, one JSONL line), in bytes.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024

#: Multi-line text fields; every other text field is a single line.
LONG_TEXT_FIELDS = frozenset(
    {"brief_summary", "detailed_description", "eligibility_criteria"}
)

#: Fields that hold a tuple of strings.
LIST_FIELDS = frozenset(
    {
        "primary_outcomes", "conditions", "keywords", "condition_mesh", "intervention_mesh",
        "countries",
    }
)  # fmt: skip

TEXT_FIELDS = frozenset(
    {
        "brief_title", "official_title", "acronym", "org_study_id", "lead_sponsor",
        "brief_summary", "detailed_description", "why_stopped", "eligibility_criteria",
        "minimum_age", "maximum_age",
    }
)  # fmt: skip

# Current API spellings of the design fields, sex and sponsor class, with the legacy aliases that
# do not reduce to them by upper-casing alone. Keys are in the form ``_key`` produces.
_VOCABULARIES: dict[str, tuple[frozenset[str], dict[str, str]]] = {
    "allocation": (frozenset({"RANDOMIZED", "NON_RANDOMIZED", "NA"}), {"N_A": "NA"}),
    "intervention_model": (
        frozenset({"SINGLE_GROUP", "PARALLEL", "CROSSOVER", "FACTORIAL", "SEQUENTIAL"}),
        {},
    ),
    "primary_purpose": (
        frozenset(
            {
                "TREATMENT", "PREVENTION", "DIAGNOSTIC", "ECT", "SUPPORTIVE_CARE", "SCREENING",
                "HEALTH_SERVICES_RESEARCH", "BASIC_SCIENCE", "DEVICE_FEASIBILITY", "OTHER",
            }
        ),  # fmt: skip
        {"EDUCATIONAL_COUNSELING_TRAINING": "ECT"},
    ),
    "masking": (
        frozenset({"NONE", "SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE"}),
        {"OPEN_LABEL": "NONE", "NO_MASKING": "NONE"},
    ),
    "observational_model": (
        frozenset(
            {
                "COHORT", "CASE_CONTROL", "CASE_ONLY", "CASE_CROSSOVER", "ECOLOGIC_OR_COMMUNITY",
                "FAMILY_BASED", "DEFINED_POPULATION", "NATURAL_HISTORY", "OTHER",
            }
        ),  # fmt: skip
        {},
    ),
    "time_perspective": (
        frozenset({"RETROSPECTIVE", "PROSPECTIVE", "CROSS_SECTIONAL", "OTHER"}),
        {},
    ),
    "gender": (frozenset({"ALL", "FEMALE", "MALE"}), {"BOTH": "ALL"}),
    "sponsor_class": (
        frozenset(
            {"NIH", "FED", "OTHER_GOV", "INDIV", "INDUSTRY", "NETWORK", "AMBIG", "OTHER", "UNKNOWN"}
        ),
        {"U_S_FED": "FED", "US_FED": "FED"},
    ),
}

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip

_ISO_DATE = re.compile(r"^\d{4}(?:-\d{2}(?:-\d{2})?)?$")
_DAY_DATE = re.compile(r"^([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})$")
_MONTH_DATE = re.compile(r"^([A-Za-z]+)\.?,?\s+(\d{4})$")
_NOT_APPLICABLE = re.compile(r"\bN/A\b", re.IGNORECASE)
_NO_AGE = frozenset({"N/A", "NA", "NONE", "NO LIMIT"})
_HEALTHY_YES = frozenset({"YES", "TRUE", "ACCEPTS_HEALTHY_VOLUNTEERS"})
_HEALTHY_NO = frozenset({"NO", "FALSE"})
_MAX_COUNT_DIGITS = 18
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# A line that starts a bullet or numbered item in a hard-wrapped legacy textblock.
_BULLET = re.compile(r"^(?:[-*+•·o]\s|\d{1,3}[.)]\s|\(?[a-zA-Z]\)\s|[a-zA-Z]\.\s)")


def _key(value: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", value.strip().upper()).strip("_")


def one_line(value: str) -> str:
    """Collapse every run of whitespace to one space."""
    return " ".join(value.split())


def clean_text(value: str) -> str:
    """Drop ``\\r``, trailing blanks and extra blank lines of a multi-line text."""
    lines = [line.rstrip() for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def unwrap_textblock(value: str) -> str:
    """Undo the hard wrapping of a legacy XML textblock.

    Lines are stripped of their indentation and joined into paragraphs; a blank line separates
    paragraphs (kept as ``\\n\\n``) and a bullet or numbered item starts a new line.
    """
    paragraphs: list[str] = []
    lines: list[str] = []
    for raw in value.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = one_line(raw)
        if not line:
            if lines:
                paragraphs.append("\n".join(lines))
                lines = []
        elif lines and not _BULLET.match(line):
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    if lines:
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def normalise_date(value: str) -> str:
    """Return a registry date as ISO ``YYYY-MM-DD`` or ``YYYY-MM``; other text is kept as it is."""
    if _ISO_DATE.match(value):
        return value
    match = _DAY_DATE.match(value)
    if match and match.group(1).lower() in _MONTHS:
        month, day, year = _MONTHS[match.group(1).lower()], int(match.group(2)), match.group(3)
        return f"{year}-{month:02d}-{day:02d}"
    match = _MONTH_DATE.match(value)
    if match and match.group(1).lower() in _MONTHS:
        return f"{match.group(2)}-{_MONTHS[match.group(1).lower()]:02d}"
    logger.debug("date %r is in no known format; kept as it is", value)
    return value


_MASKED_ROLES = frozenset({"PARTICIPANT", "SUBJECT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"})
_MASKING_LEVELS = {1: "SINGLE", 2: "DOUBLE", 3: "TRIPLE", 4: "QUADRUPLE", 5: "QUADRUPLE"}


def normalise_term(field: str, value: str) -> str | None:
    """Map a design field, sex or sponsor class onto its current API spelling, else ``None``."""
    allowed, aliases = _VOCABULARIES[field]
    if field == "masking":
        # "Double (Participant, Investigator)": who is masked is not kept, only the level.
        value = re.sub(r"\(.*\)", "", value)
    key = _key(value)
    if field == "intervention_model":
        key = key.removesuffix("_ASSIGNMENT")
    if field == "masking":
        key = key.removesuffix("_BLIND")
        roles = {_key(r) for r in value.split(",") if r.strip()}
        if roles and roles <= _MASKED_ROLES:
            # Older legacy records list who is masked ("Participant, Investigator"), not the
            # level; the registry's level is the number of masked roles.
            key = _MASKING_LEVELS[len(roles)]
    key = aliases.get(key, key)
    return key if key in allowed else None


class _Builder:
    """Turns one raw field dict into a ``Trial``; holds the record's name for messages."""

    def __init__(self, source: str | None, record: str | None):
        self.source = source
        self.record = record

    def invalid(self, message: str) -> InvalidRecord:
        return InvalidRecord(message, source=self.source, record=self.record)

    @property
    def where(self) -> str:
        return ", ".join(p for p in (self.source, self.record and f"record {self.record}") if p)

    def warn_unknown(self, field: str, value: Any, detail: str = "") -> None:
        logger.warning(
            "%s: unknown %s %.200r; the field is set to None%s", self.where, field, value, detail
        )

    def text(self, field: str, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.invalid(f"field {field} must be a string, got {type(value).__name__}")
        if len(value) > MAX_FIELD_CHARS:
            raise self.invalid(
                f"field {field} is {len(value)} characters, over the limit of {MAX_FIELD_CHARS}"
            )
        surrogate = _SURROGATE.search(value)
        if surrogate:
            raise self.invalid(
                f"field {field} is not valid Unicode "
                f"(a lone surrogate at character {surrogate.start()})"
            )
        value = clean_text(value) if field in LONG_TEXT_FIELDS else one_line(value)
        return value or None

    def strings(self, field: str, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise self.invalid(
                f"field {field} must be a list of strings, got {type(value).__name__}"
            )
        items = (self.text(field, item) for item in value)
        return tuple(item for item in items if item is not None)

    def enum(self, field: str, parse: Any, value: Any) -> Any:
        value = self.text(field, value)
        if value is None:
            return None
        try:
            return parse(value)
        except InvalidParameter as error:
            self.warn_unknown(field, value, f" ({error})")
            return None

    def term(self, field: str, value: Any) -> str | None:
        value = self.text(field, value)
        if value is None:
            return None
        term = normalise_term(field, value)
        if term is None:
            allowed = ", ".join(sorted(_VOCABULARIES[field][0]))
            self.warn_unknown(field, value, f"; allowed values: {allowed}")
        return term

    def date(self, field: str, value: Any) -> str | None:
        value = self.text(field, value)
        return None if value is None else normalise_date(value)

    def age(self, field: str, value: Any) -> str | None:
        value = self.text(field, value)
        if value is None or value.upper() in _NO_AGE:
            return None
        return value

    def enrollment(self, value: Any) -> int | None:
        if value is None or isinstance(value, bool):
            if isinstance(value, bool):
                self.warn_unknown("enrollment", value)
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            value = value.strip().replace(",", "")
            if not value:
                return None
            # isdigit alone lets '²' through to int(); a huge count would exceed the digit limit.
            if value.isascii() and value.isdigit() and len(value) <= _MAX_COUNT_DIGITS:
                value = int(value)
        if not isinstance(value, int) or value < 0:
            self.warn_unknown("enrollment", value)
            return None
        return value

    def healthy(self, value: Any) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        value = self.text("healthy_volunteers", value)
        if value is None:
            return None
        key = _key(value)
        if key in _HEALTHY_YES:
            return True
        if key in _HEALTHY_NO:
            return False
        self.warn_unknown("healthy_volunteers", value)
        return None

    def phases(self, value: Any) -> Any:
        if isinstance(value, str):
            value = self.text("phases", value)
            if value is not None:
                # parse_phases splits on "/", which would cut the legacy "N/A" in two.
                value = _NOT_APPLICABLE.sub("NA", value)
        elif value is not None:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise self.invalid(
                    f"field phases must be a string or a list of strings, got {value!r:.80}"
                )
        try:
            return parse_phases(value)
        except InvalidParameter as error:
            self.warn_unknown("phases", value, f" ({error})")
            return None

    def interventions(self, value: Any) -> tuple[Intervention, ...] | None:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise self.invalid(
                f"field interventions must be a list, got {type(value).__name__}"
            )
        out = []
        for item in value:
            if isinstance(item, Mapping):
                kind, name = item.get("type"), item.get("name")
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                kind, name = item
            else:
                raise self.invalid(
                    f"each intervention must be an object with type and name, got {item!r:.80}"
                )
            name = self.text("intervention name", name)
            if name is None:
                logger.warning("%s: an intervention without a name is left out", self.where)
                continue
            kind = self.enum("intervention type", InterventionType.parse, kind)
            out.append(Intervention(kind, name))
        return tuple(out)


def build_trial(
    fields: Mapping[str, Any],
    *,
    source: str | None = None,
    textblocks: bool = False,
) -> Trial:
    """Build a ``Trial`` from raw values stored under the ``Trial`` field names.

    Args:
        fields: raw values; ``phases`` may be a string or a list, ``interventions`` a list of
            ``{"type", "name"}`` objects or ``(type, name)`` pairs. Absent keys are ``None``.
        source: where the record was read, for ``Trial.source`` and messages.
        textblocks: the long text fields are hard-wrapped legacy XML textblocks to unwrap.

    Raises:
        InvalidRecord: no or a malformed NCT ID, a value of the wrong type, a field over the limit.
    """
    nct_id = fields.get("nct_id")
    builder = _Builder(source, None)
    if nct_id is None or (isinstance(nct_id, str) and not nct_id.strip()):
        raise builder.invalid("the record has no NCT ID")
    # isascii: the pattern's \d also matches the digits of other scripts.
    if (
        not isinstance(nct_id, str)
        or not nct_id.strip().isascii()
        or not NCT_ID_PATTERN.match(nct_id.strip())
    ):
        raise builder.invalid(
            f"malformed NCT ID {nct_id!r:.40}; expected NCT followed by 8 digits"
        )
    nct_id = nct_id.strip()
    builder.record = nct_id

    values: dict[str, Any] = {}
    for field in TEXT_FIELDS:
        raw = fields.get(field)
        if textblocks and field in LONG_TEXT_FIELDS and isinstance(raw, str):
            builder.text(field, raw)  # the size check, before the work of unwrapping
            raw = unwrap_textblock(raw)
        values[field] = builder.text(field, raw)
    for field in ("minimum_age", "maximum_age"):
        values[field] = builder.age(field, fields.get(field))
    for field in LIST_FIELDS:
        values[field] = builder.strings(field, fields.get(field))
    if values["countries"]:
        values["countries"] = tuple(dict.fromkeys(values["countries"]))
    for field in _VOCABULARIES:
        values[field] = builder.term(field, fields.get(field))
    for field in ("start_date", "completion_date"):
        values[field] = builder.date(field, fields.get(field))
    return Trial(
        nct_id=nct_id,
        overall_status=builder.enum("overall_status", Status.parse, fields.get("overall_status")),
        study_type=builder.enum("study_type", StudyType.parse, fields.get("study_type")),
        phases=builder.phases(fields.get("phases")),
        enrollment=builder.enrollment(fields.get("enrollment")),
        healthy_volunteers=builder.healthy(fields.get("healthy_volunteers")),
        interventions=builder.interventions(fields.get("interventions")),
        source=source,
        **values,
    )
