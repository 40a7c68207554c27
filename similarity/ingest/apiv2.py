"""ClinicalTrials.gov API v2 study JSON (``{"protocolSection": ..., ...}``) -> ``Trial``.

The same shape comes from ``/api/v2/studies/{nctId}``, from each item of a ``/api/v2/studies`` page
and from the registry's bulk JSON download. Values use the current enums (``ACTIVE_NOT_RECRUITING``,
``PHASE1``); the legacy spellings are accepted as well.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from ..exceptions import InvalidRecord
from .trial import Trial
from ._common import build_trial

__all__ = ["trial_from_study", "is_study"]

logger = logging.getLogger(__name__)


def is_study(doc: Any) -> bool:
    """Whether ``doc`` looks like one API v2 study."""
    return isinstance(doc, Mapping) and "protocolSection" in doc


class _Reader:
    """Reads nested values of one study, naming the JSON path of any value of the wrong shape."""

    def __init__(self, doc: Mapping[str, Any], source: str | None):
        self.doc = doc
        self.source = source
        self.record: str | None = None

    def invalid(self, message: str) -> InvalidRecord:
        return InvalidRecord(message, source=self.source, record=self.record)

    def get(self, path: str, node: Any = None) -> Any:
        """The value at a dotted path, ``None`` where any step is absent or null."""
        node = self.doc if node is None else node
        walked = []
        for step in path.split("."):
            if node is None:
                return None
            if not isinstance(node, Mapping):
                name = ".".join(walked) or "the study"
                raise self.invalid(f"{name} must be an object, got {type(node).__name__}")
            node = node.get(step)
            walked.append(step)
        return node

    def objects(self, path: str) -> list[Mapping[str, Any]] | None:
        """The list of objects at a dotted path, ``None`` when absent."""
        value = self.get(path)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.invalid(f"{path} must be a list of objects")
        return value

    def each(self, path: str, key: str) -> list[Any] | None:
        """``key`` of every object in the list at ``path``; ``None`` when the list is absent."""
        items = self.objects(path)
        return None if items is None else [item.get(key) for item in items]


def trial_from_study(doc: Mapping[str, Any], *, source: str | None = None) -> Trial:
    """Map one API v2 study onto a ``Trial``.

    Raises:
        InvalidRecord: no ``protocolSection``, no valid NCT ID, a module of the wrong shape, a text
            field over the size limit.
    """
    if not is_study(doc):
        raise InvalidRecord("not an API v2 study: no protocolSection", source=source)
    r = _Reader(doc, source)
    nct_id = r.get("protocolSection.identificationModule.nctId")
    r.record = nct_id if isinstance(nct_id, str) else None
    p = "protocolSection."
    design = p + "designModule.designInfo."
    interventions = r.objects(p + "armsInterventionsModule.interventions")
    countries = r.each(p + "contactsLocationsModule.locations", "country")
    fields = {
        "nct_id": nct_id,
        "org_study_id": r.get(p + "identificationModule.orgStudyIdInfo.id"),
        "brief_title": r.get(p + "identificationModule.briefTitle"),
        "official_title": r.get(p + "identificationModule.officialTitle"),
        "acronym": r.get(p + "identificationModule.acronym"),
        "lead_sponsor": r.get(p + "sponsorCollaboratorsModule.leadSponsor.name"),
        "sponsor_class": r.get(p + "sponsorCollaboratorsModule.leadSponsor.class"),
        "brief_summary": r.get(p + "descriptionModule.briefSummary"),
        "detailed_description": r.get(p + "descriptionModule.detailedDescription"),
        "overall_status": r.get(p + "statusModule.overallStatus"),
        "why_stopped": r.get(p + "statusModule.whyStopped"),
        "start_date": r.get(p + "statusModule.startDateStruct.date"),
        "completion_date": r.get(p + "statusModule.completionDateStruct.date"),
        "phases": r.get(p + "designModule.phases"),
        "study_type": r.get(p + "designModule.studyType"),
        "allocation": r.get(design + "allocation"),
        "intervention_model": r.get(design + "interventionModel"),
        "primary_purpose": r.get(design + "primaryPurpose"),
        "masking": r.get(design + "maskingInfo.masking"),
        "observational_model": r.get(design + "observationalModel"),
        "time_perspective": r.get(design + "timePerspective"),
        "enrollment": r.get(p + "designModule.enrollmentInfo.count"),
        "primary_outcomes": r.each(p + "outcomesModule.primaryOutcomes", "measure"),
        "conditions": r.get(p + "conditionsModule.conditions"),
        "keywords": r.get(p + "conditionsModule.keywords"),
        "interventions": None
        if interventions is None
        else [{"type": i.get("type"), "name": i.get("name")} for i in interventions],
        "eligibility_criteria": r.get(p + "eligibilityModule.eligibilityCriteria"),
        "gender": r.get(p + "eligibilityModule.sex"),
        "minimum_age": r.get(p + "eligibilityModule.minimumAge"),
        "maximum_age": r.get(p + "eligibilityModule.maximumAge"),
        "healthy_volunteers": r.get(p + "eligibilityModule.healthyVolunteers"),
        "condition_mesh": r.each("derivedSection.conditionBrowseModule.meshes", "term"),
        "intervention_mesh": r.each("derivedSection.interventionBrowseModule.meshes", "term"),
        # Locations without a country say nothing about the countries.
        "countries": None if countries is None else [c for c in countries if c is not None],
    }
    return build_trial(fields, source=source)
