"""The JSON Schema of one trial document, as :func:`~similarity.ingest.trial_from_document` reads it.

The HTTP service publishes it as the body of ``POST /related``, so that the OpenAPI document says
what the loaders accept: an API v2 study (``protocolSection.identificationModule.nctId``) or a flat
record (``nct_id`` and the ``Trial`` field names). Text is a string or ``null`` (at most
``MAX_FIELD_CHARS`` characters); lists are lists of strings. Other keys are ignored, and values
outside a vocabulary (an unknown status, a negative enrollment) become unknown rather than errors:
the schema leaves them open for that reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .trial import Trial
from ._common import LIST_FIELDS, MAX_FIELD_CHARS

__all__ = ["DOCUMENT_SCHEMA"]

_NCT_ID = {"type": "string", "pattern": "^NCT[0-9]{8}$", "examples": ["NCT02213705"]}
_TEXT = {"type": ["string", "null"], "maxLength": MAX_FIELD_CHARS}
_TEXTS = {"type": ["array", "null"], "items": _TEXT}
_PHASES = {"anyOf": [_TEXT, {"type": "array", "items": {"type": "string", "maxLength": MAX_FIELD_CHARS}}]}
_COUNT = {"description": "a non-negative integer (or its digits); any other value reads as unknown"}
_YES_NO = {"type": ["boolean", "string", "null"], "maxLength": MAX_FIELD_CHARS}


def _object(properties: dict[str, Any], *, required: tuple[str, ...] = (), nullable: bool = True) -> dict:
    schema: dict[str, Any] = {"type": ["object", "null"] if nullable else "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _objects(**properties: Any) -> dict:
    return {"type": ["array", "null"], "items": _object(properties, nullable=False)}


def _flat_schema() -> dict:
    special = {
        "nct_id": _NCT_ID,
        "enrollment": _COUNT,
        "healthy_volunteers": _YES_NO,
        "interventions": {
            "type": ["array", "null"],
            "items": {
                "anyOf": [
                    _object({"type": _TEXT, "name": _TEXT}, nullable=False),
                    {"type": "array", "items": _TEXT, "minItems": 2, "maxItems": 2},
                ]
            },
        },
    }
    properties = {
        f.name: special.get(f.name, _TEXTS if f.name in LIST_FIELDS else _TEXT)
        for f in dataclasses.fields(Trial)
        if f.name not in ("phases", "source")
    }
    properties.update(phase=_PHASES, phases=_PHASES, protocolSection=False)
    return {
        "title": "flat record",
        "description": "the Trial fields under their own names (Trial.to_dict() output); phase as one string",
        **_object(properties, required=("nct_id",), nullable=False),
    }


def _study_schema() -> dict:
    text = _TEXT
    protocol = {
        "identificationModule": _object(
            {"nctId": _NCT_ID, "briefTitle": text, "officialTitle": text, "acronym": text,
             "orgStudyIdInfo": _object({"id": text})},
            required=("nctId",), nullable=False,
        ),
        "statusModule": _object(
            {"overallStatus": text, "whyStopped": text,
             "startDateStruct": _object({"date": text}), "completionDateStruct": _object({"date": text})}
        ),
        "sponsorCollaboratorsModule": _object({"leadSponsor": _object({"name": text, "class": text})}),
        "descriptionModule": _object({"briefSummary": text, "detailedDescription": text}),
        "conditionsModule": _object({"conditions": _TEXTS, "keywords": _TEXTS}),
        "designModule": _object(
            {"phases": _PHASES, "studyType": text, "enrollmentInfo": _object({"count": _COUNT}),
             "designInfo": _object(
                 {"allocation": text, "interventionModel": text, "primaryPurpose": text,
                  "observationalModel": text, "timePerspective": text, "maskingInfo": _object({"masking": text})}
             )}
        ),
        "armsInterventionsModule": _object({"interventions": _objects(type=text, name=text)}),
        "outcomesModule": _object({"primaryOutcomes": _objects(measure=text)}),
        "eligibilityModule": _object(
            {"eligibilityCriteria": text, "sex": text, "minimumAge": text, "maximumAge": text,
             "healthyVolunteers": _YES_NO}
        ),
        "contactsLocationsModule": _object({"locations": _objects(country=text)}),
    }
    derived = {
        "conditionBrowseModule": _object({"meshes": _objects(term=text)}),
        "interventionBrowseModule": _object({"meshes": _objects(term=text)}),
    }
    return {
        "title": "API v2 study",
        "description": "one study as ClinicalTrials.gov's API v2 returns it (the modules read are listed)",
        **_object(
            {"protocolSection": _object(protocol, required=("identificationModule",), nullable=False),
             "derivedSection": _object(derived)},
            required=("protocolSection",), nullable=False,
        ),
    }  # fmt: skip


#: A trial document: an API v2 study or a flat record.
DOCUMENT_SCHEMA: dict[str, Any] = {"anyOf": [_study_schema(), _flat_schema()]}
