"""What the API takes and returns: response models and request parameters (its OpenAPI schema)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Depends, Query
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ..ingest import InterventionType, Phase, Status, StudyType
from ..ranking import Filters
from ..ranking.filters import MAX_AGE
from ..ranking.text_query import LETTER_PATTERN, MAX_QUERY_CHARS

__all__ = [
    "AspectParam", "BEARER", "ErrorOut", "Health", "IndexInfo", "InterventionOut", "KParam", "MAX_FILTER_VALUES", "MAX_ID_CHARS",
    "MAX_K", "Matched", "NctId", "QueryText", "Relation", "SearchList", "RelatedItem", "RelatedList", "ReloadOut", "TrialOut", "Why",
    "StatusFilter", "PhaseFilter", "InterventionTypeFilter", "StudyTypeFilter", "FilterQuery", "filter_query",
]

MAX_K = 100
MAX_ID_CHARS = 64
MAX_FILTER_VALUES = 20


class Relation(BaseModel):
    query: str | None
    candidate: str | None
    relation: str = Field(description="same, different, overlapping, earlier, later or unknown")


class Why(BaseModel):
    """Why a trial is on the list: facts shared with the query and the score's components."""

    model_config = ConfigDict(extra="allow")
    summary: str = Field(description="one short human-readable reason")
    shared: dict[str, list[str]]
    phase: Relation
    status: Relation
    fields: dict[str, float | None] = Field(description="cosine per text field, null where missing")
    components: dict[str, float] = Field(description="weighted semantic/structured/lexical; sum = score")
    stage: Literal["rerank", "retrieve"] | None = Field(
        default=None,
        description="with a cascade blend (not the default): which blend placed and scored the trial; the rerank "
                    "blend orders the first ten, the retrieve blend the rest, so scores compare within a stage")
    near_duplicates: list[str] | None = Field(
        default=None, description="near-duplicate registrations of the same programme spaced out below this one")
    aspect: Literal["condition", "intervention", "design"] | None = Field(
        default=None, description="in an aspect's list: the aspect the trial is related by (its reason comes first)")


class RelatedItem(BaseModel):
    nct_id: str
    title: str
    status: str | None
    phase: str | None
    score: float
    why: Why


class RelatedList(BaseModel):
    nct_id: str = Field(description="the query trial")
    related: list[RelatedItem]


class Matched(BaseModel):
    """What a free-text query was read as: phrases found in the index's vocabularies, phases named."""

    conditions: list[str] = Field(description="phrases of the query the index records as conditions")
    interventions: list[str] = Field(description="phrases of the query the index records as interventions")
    phase: list[str] = Field(description="phases the query names ('phase 2' -> PHASE2)")


class SearchList(BaseModel):
    query: str = Field(description="the query text, stripped")
    matched: Matched
    related: list[RelatedItem]


class InterventionOut(BaseModel):
    type: str | None
    name: str


class TrialOut(BaseModel):
    nct_id: str
    title: str
    brief_title: str | None
    official_title: str | None
    acronym: str | None
    status: str | None
    phase: str | None
    study_type: str | None
    conditions: list[str] | None
    interventions: list[InterventionOut] | None
    brief_summary: str | None
    enrollment: int | None
    start_date: str | None
    completion_date: str | None
    lead_sponsor: str | None
    url: str


class IndexInfo(BaseModel):
    model: str
    count: int
    built_at: str | None
    fingerprint: str
    backend: str
    build: str | None = Field(description="the build directory served (DIR/builds/<build>)")


class Health(BaseModel):
    status: Literal["ok"]
    index: IndexInfo
    reloads: int = Field(description="index swaps since the server started")
    reload_error: str | None = Field(description="why the last reload failed (the old build still serves)")


class ReloadOut(BaseModel):
    reloaded: bool = Field(description="false when CURRENT already named the build served")
    previous: str | None = Field(description="the build served before")
    index: IndexInfo
    seconds: float


class ErrorOut(BaseModel):
    detail: str


BEARER = HTTPBearer(auto_error=False, scheme_name="reload token",
                     description="the token the server was started with (--reload-token)")
AspectParam = Annotated[Literal["overall", "condition", "intervention", "design"], Query(
    description="related by everything (default), or by condition, intervention or design only")]
KParam = Annotated[int, Query(ge=1, le=MAX_K, description=f"number of related trials (1-{MAX_K})")]
QueryText = Annotated[str, Query(
    min_length=1, max_length=MAX_QUERY_CHARS,
    description=f"a sentence or a draft protocol's synopsis: 1-{MAX_QUERY_CHARS} characters holding a letter",
), WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": LETTER_PATTERN})]
"""The pattern (a letter, Python's ``re``) is checked by the ranker's own reading of the text."""
NctId = Annotated[str, PathParam(max_length=MAX_ID_CHARS, description="an NCT ID (case and spaces ignored)")]


def _filter(values: type[Enum]) -> Any:
    """A repeatable filter parameter: the schema lists the current spellings; legacy ones work too."""
    item = Annotated[str, WithJsonSchema({"type": "string", "enum": [v.value for v in values]})]
    return Annotated[list[item] | None, Query(
        max_length=MAX_FILTER_VALUES,
        description=f"repeat for several values (at most {MAX_FILTER_VALUES}); the registry's legacy "
                    "spellings ('Active, not recruiting', 'Phase 1/Phase 2') are accepted too",
    )]  # fmt: skip


StatusFilter, PhaseFilter = _filter(Status), _filter(Phase)
InterventionTypeFilter, StudyTypeFilter = _filter(InterventionType), _filter(StudyType)
CountryFilter = Annotated[list[Annotated[str, Query(min_length=1, max_length=100)]] | None, Query(
    max_length=MAX_FILTER_VALUES,
    description="location country as the registry spells it ('United States', 'Korea, Republic of'), "
                f"case-insensitive; repeat for any of several (at most {MAX_FILTER_VALUES})",
)]  # fmt: skip
_DATE = Annotated[str | None, Query(description="YYYY-MM-DD, YYYY-MM or YYYY (inclusive)"), WithJsonSchema(
    {"anyOf": [{"type": "string", "format": "date"},
               {"type": "string", "pattern": "^(?!0000)[0-9]{4}(-(0[1-9]|1[0-2]))?$"}]})]


def filter_query(
    status: StatusFilter = None,
    phase: PhaseFilter = None,
    intervention_type: InterventionTypeFilter = None,
    study_type: StudyTypeFilter = None,
    country: CountryFilter = None,
    recruiting_only: Annotated[bool, Query(description="only trials still open: recruiting, not yet "
                                                       "recruiting, enrolling by invitation")] = False,
    age: Annotated[float | None, Query(ge=0, le=MAX_AGE, description="years; trials whose eligible ages hold it")] = None,
    sex: Annotated[Literal["female", "male"] | None, Query(description="trials that admit this sex")] = None,
    start_after: _DATE = None,
    start_before: _DATE = None,
) -> Filters:
    """The registry filters of a related-list request (query parameters), parsed once."""
    return Filters.parse(status=status, phase=phase, intervention_type=intervention_type, study_type=study_type,
                         country=country, recruiting_only=recruiting_only, age=age, sex=sex,
                         start_after=start_after, start_before=start_before)


FilterQuery = Annotated[Filters, Depends(filter_query)]
