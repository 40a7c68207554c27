"""Legacy ClinicalTrials.gov XML (``<clinical_study>``, as in ``AllPublicXML.zip``) -> ``Trial``.

Parsing goes through ``defusedxml``: a document that declares entities (billion laughs) or refers
to external ones is refused without resolving anything, and becomes an :class:`InvalidRecord`.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from ..exceptions import InvalidRecord
from .trial import Trial
from ._common import build_trial

__all__ = ["trial_from_xml"]

logger = logging.getLogger(__name__)

_ENCODING_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']")

# Trial field -> path of a single element whose text is the value.
_SCALARS = {
    "nct_id": "id_info/nct_id",
    "org_study_id": "id_info/org_study_id",
    "brief_title": "brief_title",
    "official_title": "official_title",
    "acronym": "acronym",
    "lead_sponsor": "sponsors/lead_sponsor/agency",
    "sponsor_class": "sponsors/lead_sponsor/agency_class",
    "brief_summary": "brief_summary/textblock",
    "detailed_description": "detailed_description/textblock",
    "overall_status": "overall_status",
    "why_stopped": "why_stopped",
    "start_date": "start_date",
    "completion_date": "completion_date",
    "phases": "phase",
    "study_type": "study_type",
    "allocation": "study_design_info/allocation",
    "intervention_model": "study_design_info/intervention_model",
    "primary_purpose": "study_design_info/primary_purpose",
    "masking": "study_design_info/masking",
    "observational_model": "study_design_info/observational_model",
    "time_perspective": "study_design_info/time_perspective",
    "enrollment": "enrollment",
    "eligibility_criteria": "eligibility/criteria/textblock",
    "gender": "eligibility/gender",
    "minimum_age": "eligibility/minimum_age",
    "maximum_age": "eligibility/maximum_age",
    "healthy_volunteers": "eligibility/healthy_volunteers",
}

# Trial field -> (container path or None for top-level repeats, repeated element).
# A present container with no items reads as an empty tuple; an absent list as None.
_LISTS = {
    "primary_outcomes": (None, "primary_outcome/measure"),
    "conditions": (None, "condition"),
    "keywords": (None, "keyword"),
    "condition_mesh": ("condition_browse", "mesh_term"),
    "intervention_mesh": ("intervention_browse", "mesh_term"),
    "countries": ("location_countries", "country"),
}


def _text(element: Element | None) -> str | None:
    return None if element is None else "".join(element.itertext())


def _check_encoding(data: bytes, source: str | None, record: str | None) -> None:
    """Name invalid UTF-8 plainly instead of expat's 'not well-formed (invalid token)'."""
    declared = _ENCODING_DECLARATION.match(data[:200])
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        return  # another declared encoding: expat decodes it
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 with a byte order mark
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRecord(
            f"invalid UTF-8 at byte {error.start}", source=source, record=record
        ) from None


def parse_document(data: bytes, *, source: str | None = None, record: str | None = None) -> Element:
    """Parse one XML document safely and return its root element.

    Raises:
        InvalidRecord: malformed XML, invalid UTF-8, a DTD entity declaration or external reference.
    """
    _check_encoding(data, source, record)
    try:
        return SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as error:
        raise InvalidRecord(
            f"refused unsafe XML ({type(error).__name__}: {error})", source=source, record=record
        ) from None
    except ParseError as error:
        raise InvalidRecord(f"malformed XML: {error}", source=source, record=record) from None
    except (LookupError, ValueError) as error:
        # A declared encoding that Python lacks (LookupError) or that expat cannot use
        # (ValueError: "multi-byte encodings are not supported", e.g. utf-32).
        raise InvalidRecord(
            f"unreadable XML encoding: {error}", source=source, record=record
        ) from None
    except RecursionError:
        raise InvalidRecord("XML nested too deeply", source=source, record=record) from None


def trial_from_element(
    root: Element, *, source: str | None = None, record: str | None = None
) -> Trial:
    """Map a parsed ``<clinical_study>`` element onto a ``Trial``."""
    if root.tag != "clinical_study":
        raise InvalidRecord(
            f"root element is <{root.tag}>, expected <clinical_study>", source=source, record=record
        )
    fields: dict[str, Any] = {field: _text(root.find(path)) for field, path in _SCALARS.items()}
    for field, (container, item) in _LISTS.items():
        if container is None:
            found = root.findall(item)
            fields[field] = [_text(e) for e in found] if found else None
        else:
            parent = root.find(container)
            fields[field] = None if parent is None else [_text(e) for e in parent.findall(item)]
    interventions = root.findall("intervention")
    fields["interventions"] = (
        [
            {"type": _text(i.find("intervention_type")), "name": _text(i.find("intervention_name"))}
            for i in interventions
        ]
        if interventions
        else None
    )
    try:
        return build_trial(fields, source=source, textblocks=True)
    except InvalidRecord as error:
        if error.record is not None or record is None:
            raise
        # No readable NCT ID inside: name the record after its file, as for a parse error.
        raise InvalidRecord(error.reason, source=source, record=record) from None


def trial_from_xml(data: bytes, *, source: str | None = None, record: str | None = None) -> Trial:
    """Parse one legacy XML document into a ``Trial``.

    Args:
        data: the document's bytes.
        source: where it was read (file, zip member), for ``Trial.source`` and messages.
        record: a name for the record in messages until its NCT ID is read (the file name).

    Raises:
        InvalidRecord: the document is malformed, unsafe, not a ``<clinical_study>``, has no valid
            NCT ID or a field over the size limit.
    """
    root = parse_document(data, source=source, record=record)
    return trial_from_element(root, source=source, record=record)
