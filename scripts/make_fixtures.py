"""Build the loader fixtures in ``tests/data/`` and the seed study from the real data in ``data/``.

Run from the repository root: ``python scripts/make_fixtures.py``. The output is deterministic.

- ``legacy-sample.zip``: real legacy XML trials picked from ``data/ctgov-legacy-xml-sample.zip`` by
  the criteria in :data:`CRITERIA` (first match in member order), in the registry's
  ``NCT0000xxxx/NCT00000102.xml`` layout; ``xml/`` holds three of them as loose files.
- ``csv-sample.csv``: the header and rows picked from both files of ``data/ctgov-csv-export/``.
- ``flat-sample.jsonl``: lines of ``data/trialsim-dev/trials.jsonl``, copied byte for byte.
- ``apiv2-*.json[l]``: legacy trials of ``legacy-sample.zip`` converted to the API v2 study JSON,
  with the current enum spellings (:func:`study_from_xml`). No API v2 data ships with the project.
- ``data/seed/NCT02213705.json``: the seed trial as an API v2 study, entered by hand from
  ``data/seed/NCT02213705-page.txt`` (:func:`seed_study`; see ``data/seed/README.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree as ET

logger = logging.getLogger("make_fixtures")

ROOT = Path(__file__).resolve().parent.parent

# Trials the other fixtures refer to: NCT00000102 is the example everywhere; the next four are
# also in trialsim-dev/trials.jsonl, read from this zip, for a cross-format check.
NAMED = ["NCT00000102", "NCT00004154", "NCT00005014", "NCT00006479", "NCT00492258"]


PRESENT = "<present>"
DOWNLOADED = "required_header/download_date"

# (name, {element path: text it must have, a regex it must match, or PRESENT}, largest size)
CRITERIA: list[tuple[str, dict[str, str | re.Pattern[str]], int]] = [
    ("results posted 1", {"clinical_results": PRESENT}, 200_000),
    ("results posted 2", {"clinical_results": PRESENT}, 200_000),
    ("results posted 3", {"clinical_results": PRESENT}, 200_000),
    ("observational cohort", {"study_design_info/observational_model": "Cohort"}, 40_000),
    ("patient registry", {"study_type": "Observational [Patient Registry]"}, 60_000),
    ("expanded access", {"study_type": "Expanded Access"}, 60_000),
    ("withdrawn", {"overall_status": "Withdrawn", "why_stopped": PRESENT}, 40_000),
    ("terminated", {"overall_status": "Terminated", "why_stopped": PRESENT}, 40_000),
    ("active not recruiting", {"overall_status": "Active, not recruiting"}, 40_000),
    ("recruiting", {"overall_status": "Recruiting"}, 40_000),
    ("not yet recruiting", {"overall_status": "Not yet recruiting"}, 40_000),
    ("unknown status", {"overall_status": "Unknown status"}, 40_000),
    ("no longer available", {"overall_status": "No longer available"}, 60_000),
    ("approved for marketing", {"overall_status": "Approved for marketing"}, 60_000),
    ("biological phase 1",
     {"phase": "Phase 1", "intervention/intervention_type": "Biological"}, 40_000),
    ("early phase 1", {"phase": "Early Phase 1"}, 60_000),
    ("phase 2/phase 3", {"phase": "Phase 2/Phase 3"}, 40_000),
    ("phase 4", {"phase": "Phase 4"}, 40_000),
    ("phase N/A", {"phase": "N/A"}, 40_000),
    ("acronym", {"acronym": PRESENT}, 40_000),
    ("U.S. Fed sponsor", {"sponsors/lead_sponsor/agency_class": "U.S. Fed"}, 40_000),
    ("masking without level", {"study_design_info/masking": re.compile("^Participant")}, 60_000),
    ("processed 2017-04-10", {DOWNLOADED: re.compile("April 10, 2017")}, 40_000),
    ("processed 2023-05-09", {DOWNLOADED: re.compile("May 09, 2023")}, 40_000),
]  # fmt: skip


def _matches(root: ET.Element, wanted: dict[str, str | re.Pattern[str]]) -> bool:
    for path, value in wanted.items():
        element = root.find(path)
        if element is None:
            return False
        text = element.text or ""
        if isinstance(value, re.Pattern) and not value.search(text):
            return False
        if isinstance(value, str) and value != PRESENT and value != text:
            return False
    return True


LOOSE_XML = ["NCT00000102", "observational cohort", "withdrawn"]
API_STUDY = "NCT00000102"
API_PAGE = ["active not recruiting", "biological phase 1", "observational cohort"]
API_ARRAY = ["withdrawn", "expanded access"]
API_JSONL = ["results posted 1", "early phase 1", "NCT00004154"]

# CSV rows: (name, predicate on the row); the first match in file a then file b is kept.
CSV_CRITERIA: list[tuple[str, Callable[[dict[str, str]], bool]]] = [
    ("first terminated", lambda r: r["Study Status"] == "TERMINATED"),
    ("first completed", lambda r: r["Study Status"] == "COMPLETED"),
    ("phase 1/2 biological",
     lambda r: r["Phases"] == "PHASE1|PHASE2" and "BIOLOGICAL:" in r["Interventions"]),
    ("observational", lambda r: r["Study Type"] == "OBSERVATIONAL"),
    ("no phases", lambda r: r["Phases"] == ""),
    ("no interventions", lambda r: r["Interventions"] == ""),
    ("acronym", lambda r: r["Acronym"] != ""),
    ("country with a comma", lambda r: ", Republic of" in r["Locations"]),
    ("several interventions", lambda r: r["Interventions"].count("|") >= 2),
    ("early phase 1", lambda r: r["Phases"] == "EARLY_PHASE1"),
    ("multi-line summary",
     lambda r: "\n" in r["Brief Summary"] and r["Study Status"] == "COMPLETED"),
]  # fmt: skip

FLAT_IDS = [
    "NCT00004154", "NCT00005014", "NCT00006479", "NCT00492258",  # also in legacy-sample.zip
    "NCT02851875",  # Observational [Patient Registry]
    "NCT03543098",  # status and study type null
    "NCT00184262",  # accepts healthy volunteers
    "NCT00031863",  # enrollment null
]  # fmt: skip
FLAT_PAGE_CUT = 2  # and the first records with page_cut true whose lists are null


# --- legacy XML -> API v2 -----------------------------------------------------------------------

_STATUS = {"Unknown status": "UNKNOWN"}
_PHASE = {"N/A": "NA", "Early Phase 1": "EARLY_PHASE1"}
_PURPOSE = {"Educational/Counseling/Training": "ECT"}
_CLASS = {"U.S. Fed": "FED"}
_TYPE = {"Anticipated": "ESTIMATED"}
_LEVELS = ("None", "Single", "Double", "Triple", "Quadruple")


def _t(root: ET.Element, path: str) -> str | None:
    e = root.find(path)
    return None if e is None else (e.text or "")


def _all(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path)]


def _enum(value: str | None, table: dict[str, str] | None = None) -> str | None:
    """Legacy spelling -> current enum: ``Active, not recruiting`` -> ``ACTIVE_NOT_RECRUITING``."""
    if value is None:
        return None
    if table and value in table:
        return table[value]
    return re.sub(r"[^A-Z0-9]+", "_", value.upper()).strip("_")


def _date(element: ET.Element | None) -> dict[str, str | None] | None:
    """A legacy date element as a ``*DateStruct``: ``July 30, 1998`` -> ``1998-07-30``."""
    if element is None or not element.text:
        return None
    for fmt, out in (("%B %d, %Y", "%Y-%m-%d"), ("%B %Y", "%Y-%m")):
        try:
            date = datetime.strptime(element.text, fmt).strftime(out)
            return {"date": date, "type": _enum(element.get("type"), _TYPE)}
        except ValueError:
            pass
    raise ValueError(f"date {element.text!r}")


def _markdown(text: str | None) -> str | None:
    """A hard-wrapped legacy textblock as the API's text: paragraphs unwrapped, ``*`` bullets."""
    if text is None:
        return None
    blocks = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.replace("\r", ""))]
    blocks = [re.sub(r"^-\s+", "* ", b) for b in blocks if b]
    out = blocks[0] if blocks else ""
    for previous, block in zip(blocks, blocks[1:]):
        bullets = block.startswith("* ") and previous.startswith("* ")
        out += ("\n" if bullets else "\n\n") + block
    return out


def _prune(value: Any) -> Any:
    """Leave out what the API leaves out: null values, empty objects and lists."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _design(root: ET.Element) -> dict[str, Any]:
    phase, study_type = _t(root, "phase"), _t(root, "study_type")
    masking = _t(root, "study_design_info/masking") or ""
    level = masking.split(" ")[0]
    who = re.search(r"\((.*)\)", masking)
    enrollment = root.find("enrollment")
    design = {k: _t(root, f"study_design_info/{k}") for k in (
        "allocation", "intervention_model", "primary_purpose", "observational_model",
        "time_perspective")}  # fmt: skip
    return {
        "studyType": "OBSERVATIONAL" if (study_type or "").startswith("Observational")
        else _enum(study_type),
        "patientRegistry": True if study_type == "Observational [Patient Registry]" else None,
        "phases": None if phase is None else [
            _enum(p.strip(), _PHASE).replace("PHASE_", "PHASE")
            for p in ([phase] if phase == "N/A" else phase.split("/"))
        ],
        "designInfo": {
            "allocation": _enum(design["allocation"], {"N/A": "NA"}),
            "interventionModel": _enum(design["intervention_model"])
            and _enum(design["intervention_model"]).removesuffix("_ASSIGNMENT"),
            "primaryPurpose": _enum(design["primary_purpose"], _PURPOSE),
            "observationalModel": _enum(design["observational_model"]),
            "timePerspective": _enum(design["time_perspective"]),
            "maskingInfo": {
                "masking": _enum(level) if level in _LEVELS else None,
                "whoMasked": [_enum(w.strip()) for w in who.group(1).split(",")]
                if who and "Open" not in who.group(1) else None,
            },
        },
        "enrollmentInfo": None if enrollment is None else
        {"count": int(enrollment.text or 0), "type": _enum(enrollment.get("type"), _TYPE)},
    }  # fmt: skip


def _arms(root: ET.Element) -> dict[str, Any]:
    return {
        "armGroups": [
            {"label": _t(a, "arm_group_label"), "type": _enum(_t(a, "arm_group_type")),
             "description": _t(a, "description")}
            for a in root.findall("arm_group")
        ],
        "interventions": [
            {"type": _enum(_t(i, "intervention_type")), "name": _t(i, "intervention_name"),
             "description": _t(i, "description"), "armGroupLabels": _all(i, "arm_group_label"),
             "otherNames": _all(i, "other_name")}
            for i in root.findall("intervention")
        ],
    }  # fmt: skip


def _eligibility(root: ET.Element) -> dict[str, Any]:
    healthy = _t(root, "eligibility/healthy_volunteers")
    ages = {k: _t(root, f"eligibility/{k}") for k in ("minimum_age", "maximum_age")}
    return {
        "eligibilityCriteria": _markdown(_t(root, "eligibility/criteria/textblock")),
        "healthyVolunteers": None if healthy is None else healthy != "No",
        "sex": _enum(_t(root, "eligibility/gender")),
        "minimumAge": None if ages["minimum_age"] == "N/A" else ages["minimum_age"],
        "maximumAge": None if ages["maximum_age"] == "N/A" else ages["maximum_age"],
    }


def study_from_xml(root: ET.Element) -> dict[str, Any]:
    """Convert one legacy ``<clinical_study>`` to the API v2 study JSON."""
    sponsor_class = _enum(_t(root, "sponsors/lead_sponsor/agency_class"), _CLASS)
    address = "facility/address/"
    protocol = {
        "identificationModule": {
            "nctId": _t(root, "id_info/nct_id"),
            "orgStudyIdInfo": {"id": _t(root, "id_info/org_study_id")},
            "secondaryIdInfos": [{"id": i} for i in _all(root, "id_info/secondary_id")],
            "organization": {"fullName": _t(root, "source"), "class": sponsor_class},
            "briefTitle": _t(root, "brief_title"),
            "officialTitle": _t(root, "official_title"),
            "acronym": _t(root, "acronym"),
        },
        "statusModule": {
            "overallStatus": _enum(_t(root, "overall_status"), _STATUS),
            "whyStopped": " ".join((_t(root, "why_stopped") or "").split()) or None,
            "startDateStruct": _date(root.find("start_date")),
            "completionDateStruct": _date(root.find("completion_date")),
        },
        "sponsorCollaboratorsModule": {
            "leadSponsor": {
                "name": _t(root, "sponsors/lead_sponsor/agency"), "class": sponsor_class
            },
            "collaborators": [
                {"name": _t(c, "agency"), "class": _enum(_t(c, "agency_class"), _CLASS)}
                for c in root.findall("sponsors/collaborator")
            ],
        },
        "descriptionModule": {
            "briefSummary": _markdown(_t(root, "brief_summary/textblock")),
            "detailedDescription": _markdown(_t(root, "detailed_description/textblock")),
        },
        "conditionsModule": {
            "conditions": _all(root, "condition"),
            "keywords": _all(root, "keyword"),
        },
        "designModule": _design(root),
        "armsInterventionsModule": _arms(root),
        "outcomesModule": {
            "primaryOutcomes": [
                {"measure": _t(o, "measure"), "description": _t(o, "description"),
                 "timeFrame": _t(o, "time_frame")}
                for o in root.findall("primary_outcome")
            ],
        },  # fmt: skip
        "eligibilityModule": _eligibility(root),
        "contactsLocationsModule": {
            "locations": [
                {"facility": _t(loc, "facility/name"), "city": _t(loc, address + "city"),
                 "state": _t(loc, address + "state"), "zip": _t(loc, address + "zip"),
                 "country": _t(loc, address + "country")}
                for loc in root.findall("location")
            ],
        },  # fmt: skip
    }
    meshes = {
        "conditionBrowseModule": "condition_browse/mesh_term",
        "interventionBrowseModule": "intervention_browse/mesh_term",
    }
    return _prune({
        "protocolSection": protocol,
        "derivedSection": {
            module: {"meshes": [{"term": t} for t in _all(root, path)]}
            for module, path in meshes.items()
        },
        "hasResults": root.find("clinical_results") is not None,
    })  # fmt: skip


# --- the seed trial, by hand --------------------------------------------------------------------

APHP = "Assistance Publique - Hôpitaux de Paris"
MSC = "INJECTION OF ALLOGENEIC MESENCHYMAL STEM CELLS"


def seed_study(page: str) -> dict[str, Any]:
    """NCT02213705 as an API v2 study, from its registry page (``NCT02213705-page.txt``).

    Values are copied from the page; the long texts are cut out of it verbatim. The page runs the
    conditions together ("SYSTEMIC SCLERODERMA ALLOGENEIC MESENCHYMAL STEM CELLS ADULT"); on the
    registry they are one condition, "Systemic Scleroderma", and the rest are keywords. The MeSH
    terms are not on the page: they are what the registry derives for that condition, entered by
    hand. No field that the page does not show is filled in.
    """
    summary = page.split("why it is being conducted.\n\n", 1)[1]
    summary = summary.split("\n\nDetailed Description", 1)[0]
    criteria = page.split("whether healthy volunteers are accepted.\n\n", 1)[1]
    criteria = criteria.split("\nMinimum Eligible Age", 1)[0].strip()
    arm = (
        "Administration of allogeneic MSCs in the treatment of severe diffuse SSc or rapidly "
        "progressive and refractory to conventional treatments by prior cyclophosphamide"
    )
    return {
        "protocolSection": {
            "identificationModule": {
                "nctId": "NCT02213705",
                "orgStudyIdInfo": {"id": "MSC Severe Systemic Sclerosis"},
                "organization": {"fullName": APHP, "class": "OTHER"},
                "briefTitle": "Treatment of Refractory Sever Systemic Scleroderma by Injection of "
                "Allogeneic Mesenchymal Stem Cells",
            },
            "statusModule": {
                "overallStatus": "COMPLETED",
                "startDateStruct": {"date": "2014-05-06"},
                "completionDateStruct": {"date": "2022-06-16"},
                "lastUpdatePostDateStruct": {"date": "2024-05-01"},
            },
            "sponsorCollaboratorsModule": {
                "responsibleParty": {"type": "SPONSOR"},
                "leadSponsor": {"name": APHP, "class": "OTHER"},
            },
            "descriptionModule": {"briefSummary": summary},
            "conditionsModule": {
                "conditions": ["Systemic Scleroderma"],
                "keywords": ["Allogeneic Mesenchymal Stem Cells", "Adult"],
            },
            "designModule": {
                "studyType": "INTERVENTIONAL",
                "phases": ["PHASE1", "PHASE2"],
                "designInfo": {"allocation": "NA", "interventionModel": "SINGLE_GROUP",
                               "primaryPurpose": "TREATMENT", "maskingInfo": {"masking": "NONE"}},
                "enrollmentInfo": {"count": 20},
            },
            "armsInterventionsModule": {
                "armGroups": [{"label": MSC, "type": "EXPERIMENTAL", "description": arm,
                               "interventionNames": [f"Biological: {MSC}"]}],
                "interventions": [{"type": "BIOLOGICAL", "name": MSC, "armGroupLabels": [MSC]}],
            },
            "eligibilityModule": {
                "eligibilityCriteria": criteria, "healthyVolunteers": False, "sex": "ALL",
                "minimumAge": "18 Years", "maximumAge": "70 Years",
            },
            "contactsLocationsModule": {
                "overallOfficials": [{"name": "dominique farges, MDPHD", "affiliation": "APHP",
                                      "role": "PRINCIPAL_INVESTIGATOR"}],
                "locations": [{"facility": "Saint-Louis Hospital", "city": "Paris",
                               "country": "France"}],
            },
            "referencesModule": {"references": [{"pmid": "38288741", "type": "BACKGROUND"},
                                                {"pmid": "36928395", "type": "DERIVED"}]},
        },
        "derivedSection": {"conditionBrowseModule": {
            "meshes": [{"term": "Scleroderma, Systemic"}, {"term": "Scleroderma, Diffuse"}]}},
        "hasResults": False,
    }  # fmt: skip


# --- writing ------------------------------------------------------------------------------------


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)


def pick_legacy(archive: zipfile.ZipFile) -> dict[str, str]:
    """Name -> member of the trials to keep: :data:`NAMED`, then each criterion's first match."""
    picked = {nct: f"{nct[:7]}xxxx/{nct}.xml" for nct in NAMED}
    taken = set(picked.values())
    pending = list(CRITERIA)
    for info in archive.infolist():
        if not pending:
            break
        if info.filename in taken:
            continue
        root = ET.fromstring(archive.read(info))
        for criterion in pending:
            name, wanted, limit = criterion
            if info.file_size <= limit and _matches(root, wanted):
                picked[name] = info.filename
                taken.add(info.filename)
                pending.remove(criterion)
                break
    for name, _, _ in pending:
        logger.warning("no legacy trial matches %r", name)
    return picked


def write_legacy_and_apiv2(data: Path, out: Path) -> None:
    with zipfile.ZipFile(data / "ctgov-legacy-xml-sample.zip") as archive:
        picked = pick_legacy(archive)
        documents = {name: archive.read(member) for name, member in picked.items()}
    by_member = {member: name for name, member in picked.items()}
    with zipfile.ZipFile(out / "legacy-sample.zip", "w", zipfile.ZIP_DEFLATED) as mini:
        for member in sorted(by_member):
            info = zipfile.ZipInfo(member, date_time=(2023, 2, 3, 0, 0, 0))  # a stable file
            info.compress_type = zipfile.ZIP_DEFLATED
            mini.writestr(info, documents[by_member[member]])
    logger.info("wrote legacy-sample.zip: %s", ", ".join(f"{n}={m}" for n, m in picked.items()))
    (out / "xml").mkdir(exist_ok=True)
    for name in LOOSE_XML:
        (out / "xml" / Path(picked[name]).name).write_bytes(documents[name])

    studies = {name: study_from_xml(ET.fromstring(doc)) for name, doc in documents.items()}
    _dump(out / "apiv2-study.json", studies[API_STUDY])
    page = {"studies": [studies[n] for n in API_PAGE], "nextPageToken": "NF0g5JGBlPMuwQY"}
    _dump(out / "apiv2-page.json", page)
    _dump(out / "apiv2-array.json", [studies[n] for n in API_ARRAY])
    lines = [json.dumps(studies[n], ensure_ascii=False) + "\n" for n in API_JSONL]
    (out / "apiv2-studies.jsonl").write_text("".join(lines), encoding="utf-8")


def write_csv(data: Path, out: Path) -> None:
    rows: list[dict[str, str]] = []
    for part in ("a", "b"):
        path = data / "ctgov-csv-export" / f"ctg-studies-{part}.csv"
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or ())
            rows.extend(reader)
    chosen: list[dict[str, str]] = []
    for name, test in CSV_CRITERIA:
        row = next((r for r in rows if test(r) and r not in chosen), None)
        if row is None:
            logger.warning("no CSV row matches %r", name)
        else:
            chosen.append(row)
    with open(out / "csv-sample.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)  # the export's dialect: minimal quotes, CRLF
        writer.writeheader()
        writer.writerows(chosen)


def write_flat(data: Path, out: Path) -> None:
    raw = (data / "trialsim-dev" / "trials.jsonl").read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in raw]
    keep = {i for i, r in enumerate(records) if r["nct_id"] in FLAT_IDS}
    cut = [i for i, r in enumerate(records) if r["page_cut"] and r["conditions"] is None]
    keep.update(cut[:FLAT_PAGE_CUT])
    (out / "flat-sample.jsonl").write_bytes(b"".join(raw[i] for i in sorted(keep)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="the real data")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data", help="the fixtures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    write_legacy_and_apiv2(args.data, args.out)
    write_csv(args.data, args.out)
    write_flat(args.data, args.out)
    page = (args.data / "seed" / "NCT02213705-page.txt").read_text(encoding="utf-8")
    _dump(args.data / "seed" / "NCT02213705.json", seed_study(page))


if __name__ == "__main__":
    main()
