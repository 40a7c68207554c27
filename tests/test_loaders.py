"""Loaders: every source format -> ``Trial``, on real records (``tests/data``, made by
``scripts/make_fixtures.py`` from ``data/``)."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
import zipfile
from pathlib import Path

import pytest

import similarity.ingest
from similarity.exceptions import InvalidRecord, SourceError
from similarity.ingest import LoadReport, iter_trials, load_trials, trial_from_document
from similarity.ingest._common import MAX_FIELD_CHARS, unwrap_textblock
from similarity.ingest import Intervention, InterventionType, Phase, Status, StudyType, Trial

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
LEGACY_ZIP = DATA / "legacy-sample.zip"
XML_DIR = DATA / "xml"
CSV_SAMPLE = DATA / "csv-sample.csv"
FLAT_SAMPLE = DATA / "flat-sample.jsonl"
API_FILES = [
    DATA / f
    for f in ("apiv2-study.json", "apiv2-page.json", "apiv2-array.json", "apiv2-studies.jsonl")
]
SEED = REPO / "data" / "seed" / "NCT02213705.json"
FULL_ZIP = REPO / "data" / "ctgov-legacy-xml-sample.zip"
ALL_FIXTURES = [LEGACY_ZIP, XML_DIR, CSV_SAMPLE, FLAT_SAMPLE, SEED, *API_FILES]


@pytest.fixture(scope="module")
def legacy() -> dict[str, Trial]:
    return {t.nct_id: t for t in load_trials([LEGACY_ZIP])}


def nct00000102_xml() -> bytes:
    with zipfile.ZipFile(LEGACY_ZIP) as archive:
        return archive.read("NCT0000xxxx/NCT00000102.xml")


def flat(**fields) -> dict:
    return {"nct_id": "NCT00000102", **fields}


def test_public_api():
    assert {"LoadReport", "iter_trials", "load_trials", "trial_from_document", "Trial"} <= set(similarity.ingest.__all__)
    for name in similarity.ingest.__all__:
        assert getattr(similarity.ingest, name)


# --- legacy XML ---------------------------------------------------------------------------------


def test_xml_nct00000102(legacy):
    t = legacy["NCT00000102"]
    assert t.brief_title == "Congenital Adrenal Hyperplasia: Calcium Channels as Therapeutic Targets"
    assert t.official_title is None and t.acronym is None
    assert t.org_study_id == "NCRR-M01RR01070-0506"
    assert t.lead_sponsor == "National Center for Research Resources (NCRR)"
    assert t.sponsor_class == "NIH"
    assert t.overall_status is Status.COMPLETED
    assert t.phases == (Phase.PHASE1, Phase.PHASE2)
    assert t.study_type is StudyType.INTERVENTIONAL
    assert (t.allocation, t.intervention_model, t.primary_purpose, t.masking) == (
        None, "PARALLEL", "TREATMENT", "DOUBLE",
    )  # fmt: skip
    assert t.conditions == ("Congenital Adrenal Hyperplasia",)
    assert t.interventions == (Intervention(InterventionType.DRUG, "Nifedipine"),)
    assert t.condition_mesh == (
        "Adrenal Hyperplasia, Congenital", "Adrenogenital Syndrome",
        "Adrenocortical Hyperfunction", "Hyperplasia",
    )  # fmt: skip
    assert t.intervention_mesh == ("Nifedipine",)
    ages = (t.gender, t.minimum_age, t.maximum_age, t.healthy_volunteers)
    assert ages == ("ALL", "14 Years", "35 Years", False)
    assert t.countries == ("United States",)
    # absent from the file: unknown, not invented
    assert t.start_date is None and t.enrollment is None
    assert t.keywords is None and t.primary_outcomes is None
    assert t.brief_summary.startswith("This study will test the ability of extended release nifedipine")
    assert "\r" not in t.brief_summary and "  " not in t.brief_summary
    assert t.eligibility_criteria == (
        "Inclusion Criteria:\n\n- diagnosed with Congenital Adrenal Hyperplasia (CAH)\n\n"
        "- normal ECG during baseline evaluation\n\nExclusion Criteria:\n\n"
        "- history of liver disease, or elevated liver function tests\n\n"
        "- history of cardiovascular disease"
    )
    assert t.source == f"{LEGACY_ZIP}, member NCT0000xxxx/NCT00000102.xml"


def test_xml_fields_across_the_sample(legacy):
    withdrawn = legacy["NCT00000270"]
    assert withdrawn.overall_status is Status.WITHDRAWN
    assert withdrawn.why_stopped == "Study never opened; never enrolled participants"
    assert (withdrawn.start_date, withdrawn.completion_date) == ("1995-12-30", "1995-12-30")
    assert withdrawn.enrollment == 0 and withdrawn.phases == (Phase.PHASE4,)

    cohort = legacy["NCT00000168"]
    assert cohort.study_type is StudyType.OBSERVATIONAL and cohort.phases is None
    assert (cohort.observational_model, cohort.time_perspective) == ("COHORT", "PROSPECTIVE")
    assert cohort.acronym == "LSOCA" and cohort.start_date == "1998-08" and cohort.maximum_age is None

    assert legacy["NCT00008216"].study_type is StudyType.OBSERVATIONAL  # "[Patient Registry]"
    assert legacy["NCT00493532"].study_type is StudyType.EXPANDED_ACCESS
    assert legacy["NCT00493532"].overall_status is Status.NO_LONGER_AVAILABLE
    assert legacy["NCT00493532"].countries == ("Taiwan",)
    assert legacy["NCT00499720"].overall_status is Status.APPROVED_FOR_MARKETING
    assert legacy["NCT00001163"].overall_status is Status.ACTIVE_NOT_RECRUITING
    assert legacy["NCT00001163"].observational_model == "FAMILY_BASED"
    assert legacy["NCT00000444"].sponsor_class == "FED"  # "U.S. Fed"
    assert legacy["NCT00000444"].masking == "NONE"  # "None (Open Label)"
    assert legacy["NCT00500006"].masking == "NONE"  # "Open Label", 2017 file
    assert legacy["NCT00500006"].allocation == "NON_RANDOMIZED"
    assert legacy["NCT00460928"].phases == (Phase.EARLY_PHASE1,)
    assert legacy["NCT00055081"].phases == (Phase.NA,)  # "N/A"
    assert legacy["NCT00055081"].minimum_age == "18 Months"
    assert legacy["NCT00000630"].interventions[0].type is InterventionType.BIOLOGICAL
    assert legacy["NCT00000125"].enrollment == 1636  # results posted
    assert legacy["NCT00000125"].primary_outcomes


def test_xml_masking_role_lists_become_levels(legacy):
    # NCT00500292 (2017 legacy file) lists the masked roles, not the level: four roles = QUADRUPLE
    trials = {t.nct_id: t for t in load_trials([XML_DIR, LEGACY_ZIP])}
    assert trials["NCT00500292"].masking == "QUADRUPLE"


def test_xml_unknown_value_keeps_record(tmp_path, caplog):
    xml = (XML_DIR / "NCT00000102.xml").read_text().replace(
        "<masking>Double</masking>", "<masking>Participant, Someone Else</masking>"
    )
    (tmp_path / "NCT00000102.xml").write_text(xml)
    with caplog.at_level(logging.WARNING):
        (trial,) = load_trials([tmp_path / "NCT00000102.xml"])
    assert trial.masking is None and trial.brief_title
    assert any("NCT00000102" in r.message and "masking" in r.message for r in caplog.records)


def test_unwrap_textblock():
    text = (
        "\n        Intro line one\r\n        continues here.\r\n\r\n"
        "          -  item one\r\n             wrapped\r\n          -  item two\r\n      "
    )
    assert unwrap_textblock(text) == "Intro line one continues here.\n\n- item one wrapped\n- item two"


# --- API v2 -------------------------------------------------------------------------------------

STRUCTURED = [
    "brief_title", "official_title", "acronym", "org_study_id", "lead_sponsor", "sponsor_class",
    "overall_status", "why_stopped", "start_date", "completion_date", "phases", "study_type",
    "allocation", "intervention_model", "primary_purpose", "masking", "observational_model",
    "time_perspective", "primary_outcomes", "enrollment", "conditions", "keywords", "interventions",
    "gender", "minimum_age", "maximum_age", "healthy_volunteers", "condition_mesh",
    "intervention_mesh", "countries", "brief_summary",
]  # fmt: skip


@pytest.mark.parametrize(
    "path, ids",
    [
        ("apiv2-study.json", ["NCT00000102"]),
        ("apiv2-page.json", ["NCT00001163", "NCT00000630", "NCT00000168"]),
        ("apiv2-array.json", ["NCT00000270", "NCT00493532"]),
        ("apiv2-studies.jsonl", ["NCT00000125", "NCT00460928", "NCT00004154"]),
    ],
)
def test_apiv2_files_match_the_legacy_xml(path, ids, legacy):
    report = LoadReport()
    trials = load_trials([DATA / path], report=report)
    assert [t.nct_id for t in trials] == ids
    trials_word = "trial" if len(ids) == 1 else "trials"
    assert report.summary() == f"{len(ids)} {trials_word} loaded, 0 records skipped, 0 duplicate NCT IDs"
    for trial in trials:
        for field in STRUCTURED:
            assert getattr(trial, field) == getattr(legacy[trial.nct_id], field), (trial.nct_id, field)


def test_apiv2_sources_name_items_and_lines():
    page = load_trials([DATA / "apiv2-page.json"])
    assert page[1].source == f"{DATA / 'apiv2-page.json'}, item 2"
    lines = load_trials([DATA / "apiv2-studies.jsonl"])
    assert lines[2].source == f"{DATA / 'apiv2-studies.jsonl'}, line 3"


def test_seed_study():
    (t,) = load_trials([SEED])
    assert t.nct_id == "NCT02213705"
    assert t.title == (
        "Treatment of Refractory Sever Systemic Scleroderma by Injection of Allogeneic Mesenchymal "
        "Stem Cells"
    )
    assert t.overall_status is Status.COMPLETED and t.phase == "PHASE1/PHASE2"
    assert (t.enrollment, t.study_type) == (20, StudyType.INTERVENTIONAL)
    assert (t.start_date, t.completion_date) == ("2014-05-06", "2022-06-16")
    assert t.conditions == ("Systemic Scleroderma",)
    assert t.keywords == ("Allogeneic Mesenchymal Stem Cells", "Adult")
    assert t.interventions == (
        Intervention(InterventionType.BIOLOGICAL, "INJECTION OF ALLOGENEIC MESENCHYMAL STEM CELLS"),
    )
    design = (t.allocation, t.intervention_model, t.primary_purpose, t.masking)
    assert design == ("NA", "SINGLE_GROUP", "TREATMENT", "NONE")
    ages = (t.gender, t.minimum_age, t.maximum_age, t.healthy_volunteers)
    assert ages == ("ALL", "18 Years", "70 Years", False)
    assert (t.lead_sponsor, t.sponsor_class) == ("Assistance Publique - Hôpitaux de Paris", "OTHER")
    assert t.countries == ("France",)
    assert t.condition_mesh == ("Scleroderma, Systemic", "Scleroderma, Diffuse")
    assert t.eligibility_criteria.startswith("Inclusion Criteria\n\n* Age\\> 18 years and \\<70 years.")
    assert t.eligibility_criteria.endswith("* Risk of poor patient compliance.")
    assert t.detailed_description is None and t.primary_outcomes is None


def test_apiv2_absent_empty_and_blank():
    study = {
        "protocolSection": {
            "identificationModule": {"nctId": "NCT00000102", "briefTitle": "", "acronym": "  "},
            "conditionsModule": {"conditions": []},
            "statusModule": {"overallStatus": "ACTIVE_NOT_RECRUITING"},
        }
    }
    t = trial_from_document(study)
    assert t.conditions == () and t.keywords is None and t.interventions is None
    assert t.brief_title is None and t.acronym is None and t.countries is None
    assert t.overall_status is Status.ACTIVE_NOT_RECRUITING


def test_apiv2_wrong_shape_is_invalid():
    study = {"protocolSection": {"identificationModule": {"nctId": "NCT00000102"}, "designModule": "x"}}
    with pytest.raises(InvalidRecord, match="protocolSection.designModule must be an object"):
        trial_from_document(study, source="s.json")


# --- CSV export ---------------------------------------------------------------------------------


def test_csv_rows():
    trials = {t.nct_id: t for t in load_trials([CSV_SAMPLE])}
    assert len(trials) == 11
    t = trials["NCT06954688"]
    assert t.brief_title.startswith("The Influence of Dry Needling for Hypertonia and Spasticity")
    assert t.overall_status is Status.TERMINATED and t.phases == (Phase.NA,)
    assert t.conditions == ("Neuropathic Pain", "Spasticity", "Dry Needling Technique", "Spinal Cord Injury")
    assert t.interventions == (Intervention(InterventionType.OTHER, "dry needling"),)
    design = (t.allocation, t.intervention_model, t.masking, t.primary_purpose)
    assert design == ("NA", "SINGLE_GROUP", "NONE", "TREATMENT")
    assert (t.lead_sponsor, t.sponsor_class, t.org_study_id) == ("Universiteit Antwerpen", "OTHER", "6585")
    assert (t.start_date, t.completion_date, t.enrollment, t.gender) == ("2024-09-06", "2025-02-04", 5, "ALL")
    assert t.countries == ("Belgium",) and t.primary_outcomes[0] == "DN4 Questionnaire:"
    assert t.minimum_age is None and t.keywords is None and t.condition_mesh is None
    assert t.source == f"{CSV_SAMPLE}, row 1"

    gen = trials["NCT06018129"]
    assert gen.phases == (Phase.PHASE1, Phase.PHASE2)
    assert gen.interventions == (Intervention(InterventionType.BIOLOGICAL, "GEN3017"),)
    assert gen.countries == ("United States", "Australia")
    assert trials["NCT06568302"].countries == ("Georgia", "Moldova, Republic of")
    assert trials["NCT06957496"].overall_status is Status.COMPLETED
    assert trials["NCT06163274"].phases == (Phase.EARLY_PHASE1,)
    observational = trials["NCT06463873"]
    assert observational.study_type is StudyType.OBSERVATIONAL and observational.phases is None
    assert observational.interventions is None  # empty cell
    assert observational.time_perspective is None  # the export writes "Time Perspective: p"
    assert "\n\n" in trials["NCT06954688"].brief_summary


def test_csv_without_id_column(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(SourceError, match="no 'NCT Number' column"):
        load_trials([path])


# --- flat records -------------------------------------------------------------------------------


def test_flat_records():
    trials = {t.nct_id: t for t in load_trials([FLAT_SAMPLE])}
    assert len(trials) == 10
    t = trials["NCT00004154"]
    assert t.brief_title == "Fenretinide in Treating Patients Who Have Undergone Surgery for Bladder Cancer"
    assert t.overall_status is Status.COMPLETED and t.phases == (Phase.PHASE3,)
    assert t.interventions == (
        Intervention(InterventionType.DRUG, "Fenretinide"), Intervention(InterventionType.OTHER, "Placebo"),
    )  # fmt: skip
    assert (t.start_date, t.completion_date, t.enrollment) == ("1998-07-30", "2005-03-01", 111)
    assert (t.masking, t.healthy_volunteers, t.acronym) == ("TRIPLE", False, None)
    assert t.source == f"{FLAT_SAMPLE}, line 1"
    cut = trials["NCT00805389"]  # page_cut: null lists are unknown
    assert cut.conditions is None and cut.interventions is None and cut.keywords is None
    assert trials["NCT03543098"].overall_status is None and trials["NCT03543098"].study_type is None
    assert trials["NCT02851875"].study_type is StudyType.OBSERVATIONAL
    assert trials["NCT00184262"].healthy_volunteers is True
    assert trials["NCT00031863"].enrollment is None


def test_flat_agrees_with_xml_on_structured_fields(legacy):
    # trialsim-dev read these four from the same legacy XML; its texts are flattened and cut
    for t in load_trials([FLAT_SAMPLE]):
        if t.nct_id in legacy:
            x = legacy[t.nct_id]
            for field in ("overall_status", "phases", "study_type", "conditions", "interventions",
                          "condition_mesh", "intervention_mesh", "masking", "start_date", "gender"):  # fmt: skip
                assert getattr(t, field) == getattr(x, field), (t.nct_id, field)


def test_round_trip_every_fixture_trial(tmp_path):
    trials = list(iter_trials(ALL_FIXTURES))
    assert len(trials) == 29 + 3 + 11 + 10 + 1 + 9
    for trial in trials:
        assert trial_from_document(trial.to_dict()) == trial, trial.nct_id
    path = tmp_path / "round.jsonl"
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in trials), encoding="utf-8")
    assert list(iter_trials([path])) == trials


# --- enum spellings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, legacy_value, current_value, expected",
    [
        ("overall_status", "Active, not recruiting", "ACTIVE_NOT_RECRUITING", Status.ACTIVE_NOT_RECRUITING),
        ("overall_status", "Unknown status", "UNKNOWN", Status.UNKNOWN),
        ("phase", "Phase 1/Phase 2", "PHASE1/PHASE2", (Phase.PHASE1, Phase.PHASE2)),
        ("phase", "N/A", "NA", (Phase.NA,)),
        ("phase", "Early Phase 1", "EARLY_PHASE1", (Phase.EARLY_PHASE1,)),
        ("study_type", "Observational [Patient Registry]", "OBSERVATIONAL", StudyType.OBSERVATIONAL),
        ("study_type", "Expanded Access", "EXPANDED_ACCESS", StudyType.EXPANDED_ACCESS),
        ("allocation", "Non-Randomized", "NON_RANDOMIZED", "NON_RANDOMIZED"),
        ("intervention_model", "Single Group Assignment", "SINGLE_GROUP", "SINGLE_GROUP"),
        ("primary_purpose", "Educational/Counseling/Training", "ECT", "ECT"),
        ("masking", "Quadruple (Participant, Care Provider, Investigator, Outcomes Assessor)",
         "QUADRUPLE", "QUADRUPLE"),
        ("masking", "Double Blind (Participant, Investigator)", "DOUBLE", "DOUBLE"),
        ("observational_model", "Case-Control", "CASE_CONTROL", "CASE_CONTROL"),
        ("time_perspective", "Cross-Sectional", "CROSS_SECTIONAL", "CROSS_SECTIONAL"),
        ("gender", "Female", "FEMALE", "FEMALE"),
        ("sponsor_class", "Industry", "INDUSTRY", "INDUSTRY"),
        ("healthy_volunteers", "Accepts Healthy Volunteers", True, True),
        ("start_date", "July 30, 1998", "1998-07-30", "1998-07-30"),
        ("start_date", "January 2004", "2004-01", "2004-01"),
    ],
)
@pytest.mark.parametrize("spelling", ["legacy", "current"])
def test_both_spellings(field, legacy_value, current_value, expected, spelling):
    value = legacy_value if spelling == "legacy" else current_value
    trial = trial_from_document(flat(**{field: value}))
    assert getattr(trial, "phases" if field == "phase" else field) == expected


@pytest.mark.parametrize("kind", ["Biological", "BIOLOGICAL", "biological"])
def test_intervention_type_spellings(kind):
    trial = trial_from_document(flat(interventions=[{"type": kind, "name": "Vaccine"}]))
    assert trial.interventions == (Intervention(InterventionType.BIOLOGICAL, "Vaccine"),)


def test_apiv2_accepts_legacy_spellings():
    study = json.loads((DATA / "apiv2-study.json").read_text(encoding="utf-8"))
    study["protocolSection"]["statusModule"]["overallStatus"] = "Completed"
    study["protocolSection"]["designModule"]["phases"] = ["Phase 1", "Phase 2"]
    study["protocolSection"]["armsInterventionsModule"]["interventions"][0]["type"] = "Drug"
    current = json.loads((DATA / "apiv2-study.json").read_text(encoding="utf-8"))
    assert trial_from_document(study) == trial_from_document(current)


@pytest.mark.parametrize(
    "field, value", [("overall_status", "Paused"), ("phase", "Phase 9"), ("study_type", "Imaginary"),
                     ("masking", "Blindfolded"), ("enrollment", "many")],  # fmt: skip
)
def test_unknown_enum_value_keeps_record(field, value, caplog):
    with caplog.at_level(logging.WARNING):
        trial = trial_from_document(flat(brief_title="Kept", **{field: value}), source="x.jsonl, line 1")
    assert trial.brief_title == "Kept"
    assert getattr(trial, "phases" if field == "phase" else field) is None
    assert "x.jsonl, line 1, record NCT00000102" in caplog.text and repr(value) in caplog.text


def test_flat_null_empty_and_blank():
    t = trial_from_document(flat(conditions=None, keywords=[], brief_title="", interventions=[]))
    assert t.conditions is None and t.keywords == () and t.brief_title is None and t.interventions == ()


# --- sources ------------------------------------------------------------------------------------


def test_directory_single_file_and_mixed_sources():
    assert [t.nct_id for t in load_trials([XML_DIR])] == ["NCT00000102", "NCT00000168", "NCT00000270"]
    assert [t.nct_id for t in load_trials([XML_DIR / "NCT00000102.xml"])] == ["NCT00000102"]
    assert [t.nct_id for t in load_trials(str(XML_DIR / "NCT00000102.xml"))] == ["NCT00000102"]
    # tests/data walked: the .json, .jsonl, .csv and xml/*.xml files, sorted; the zip is not walked
    walked = list(iter_trials([DATA]))
    assert len(walked) == 2 + 3 + 3 + 1 + 11 + 10 + 3
    assert walked[0].source == f"{DATA / 'apiv2-array.json'}, item 1"
    mixed = load_trials([CSV_SAMPLE, LEGACY_ZIP, FLAT_SAMPLE, *API_FILES])
    assert len(mixed) == 11 + 29 + 6  # flat and API v2 records repeat trials of the zip
    assert mixed[0].nct_id == "NCT06954688"


def test_load_trials_dedupes_in_place(caplog):
    report = LoadReport()
    with caplog.at_level(logging.WARNING):
        trials = load_trials([LEGACY_ZIP, XML_DIR], report=report)
    assert len(trials) == 29 and report.loaded == 29
    assert report.duplicates == ["NCT00000102", "NCT00000168", "NCT00000270"]
    assert trials[0].nct_id == "NCT00000102" and trials[0].source == str(XML_DIR / "NCT00000102.xml")
    assert report.summary() == "29 trials loaded, 0 records skipped, 3 duplicate NCT IDs"
    assert "NCT00000102" in caplog.text
    report = LoadReport()
    assert len(list(iter_trials([LEGACY_ZIP, XML_DIR], report=report))) == 32
    assert report.loaded == 32 and len(report.duplicates) == 3


def test_report_summary_singular():
    report = LoadReport(loaded=1, errors=[InvalidRecord("x")], duplicates=["NCT00000102"])
    assert report.summary() == "1 trial loaded, 1 record skipped, 1 duplicate NCT ID"


def test_progress_bar(capsys):
    assert len(load_trials([LEGACY_ZIP], progress=True)) == 29
    err = capsys.readouterr().err
    assert "29/29" in err and "trial" in err


def test_zip_is_streamed(monkeypatch):
    opened = []
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened.append(name)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    first = list(itertools.islice(iter_trials([LEGACY_ZIP]), 2))
    assert [t.nct_id for t in first] == ["NCT00000102", "NCT00000105"]
    assert len(opened) <= 3


# --- errors -------------------------------------------------------------------------------------


def test_source_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        load_trials([tmp_path / "missing.zip"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match=r"notes\.txt: unknown file type '\.txt'"):
        load_trials([tmp_path / "notes.txt"], strict=False)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="bad.zip"):
        list(iter_trials([tmp_path / "bad.zip"]))
    with pytest.raises(SourceError):  # before anything is yielded, even after good sources
        next(iter_trials([LEGACY_ZIP, tmp_path / "missing"]))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<clinical_study><id_info><nct_id>NCT00000001</nct_id></id_info><brief_title>&lol3;</brief_title></clinical_study>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<clinical_study><id_info><nct_id>NCT00000002</nct_id></id_info><brief_title>&e;</brief_title></clinical_study>"""


def bad_documents() -> dict[str, bytes]:
    good = nct00000102_xml()
    return {
        "NCT00000003.xml": good.replace(b"<nct_id>NCT00000102</nct_id>", b""),
        "NCT00000004.xml": good[: len(good) // 2],
        "NCT00000005.xml": good.replace(b"Congenital Adrenal", b"Congenital \xff\xfeAdrenal", 1),
        "NCT00000001.xml": BILLION_LAUGHS,
        "NCT00000002.xml": EXTERNAL_ENTITY,
        "NCT00000006.xml": good.replace(b"NCT00000102</nct_id>", b"NCT102</nct_id>"),
        "NCT00000007.xml": b"<other/>",
    }


EXPECTED_MESSAGES = {
    "NCT00000003.xml": "the record has no NCT ID",
    "NCT00000004.xml": "malformed XML",
    "NCT00000005.xml": "invalid UTF-8 at byte",
    "NCT00000001.xml": "refused unsafe XML (EntitiesForbidden",
    "NCT00000002.xml": "refused unsafe XML (EntitiesForbidden",
    "NCT00000006.xml": "malformed NCT ID 'NCT102'",
    "NCT00000007.xml": "root element is <other>",
}


@pytest.fixture
def bad_dir(tmp_path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    for name, data in bad_documents().items():
        (folder / name).write_bytes(data)
    shutil.copy(XML_DIR / "NCT00000102.xml", folder)
    return folder


def test_bad_xml_files_skipped_and_named(bad_dir):
    report = LoadReport()
    trials = load_trials([bad_dir], report=report)
    assert [t.nct_id for t in trials] == ["NCT00000102"]
    assert report.summary() == "1 trial loaded, 7 records skipped, 0 duplicate NCT IDs"
    by_file = {Path(e.source).name: e for e in report.errors}
    assert set(by_file) == set(EXPECTED_MESSAGES)
    for name, message in EXPECTED_MESSAGES.items():
        error = by_file[name]
        assert message in str(error) and str(bad_dir / name) in str(error)
    assert by_file["NCT00000004.xml"].record == "NCT00000004"  # named after the file when unreadable
    assert "passwd" not in str(trials) and "root:" not in str(by_file["NCT00000002.xml"])


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_bad_xml_raises_in_strict_mode(bad_dir, name):
    with pytest.raises(InvalidRecord, match=EXPECTED_MESSAGES[name].replace("(", r"\(")):
        load_trials([bad_dir / name], strict=True)


def test_bad_zip_members_named(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("NCT0000xxxx/NCT00000102.xml", nct00000102_xml())
        for name, data in bad_documents().items():
            archive.writestr(f"NCT0000xxxx/{name}", data)
        archive.writestr("NCT0000xxxx/README.txt", "ignored")
    report = LoadReport()
    assert [t.nct_id for t in load_trials([path], report=report)] == ["NCT00000102"]
    assert len(report.errors) == 7
    assert all(e.source.startswith(f"{path}, member NCT0000xxxx/NCT0000000") for e in report.errors)
    with pytest.raises(InvalidRecord, match="member NCT0000xxxx/NCT00000003.xml"):
        load_trials([path], strict=True)


def test_bad_json_lines(tmp_path):
    good = FLAT_SAMPLE.read_bytes().splitlines()[0]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                good,
                b'{"nct_id": "NCT0000', 
                b'"just a string"',
                b'{"brief_title": "no id"}',
                b'{"nct_id": "NCT00000102", "brief_title": "caf\xe9"}',
                b"",
                b"[" * 100_000 + b"]" * 100_000,
                json.dumps(flat(brief_summary="x" * (MAX_FIELD_CHARS + 1))).encode(),
                (DATA / "apiv2-study.json").read_bytes().replace(b"\n", b""),
            ]
        )
        + b"\n"
    )
    report = LoadReport()
    trials = load_trials([path], report=report)
    assert [t.nct_id for t in trials] == ["NCT00004154", "NCT00000102"]
    messages = {e.source.rsplit(", ", 1)[1]: e.reason for e in report.errors}
    assert messages["line 2"].startswith("malformed JSON")
    assert messages["line 3"] == "a record must be a JSON object, got str"
    assert messages["line 4"].startswith("not an API v2 study (no protocolSection) nor a flat record")
    assert messages["line 5"].startswith("invalid UTF-8")
    assert messages["line 7"] == "JSON nested too deeply"
    assert messages["line 8"] == (
        f"field brief_summary is {MAX_FIELD_CHARS + 1} characters, over the limit of {MAX_FIELD_CHARS}"
    )
    assert report.errors[-1].record == "NCT00000102"
    with pytest.raises(InvalidRecord, match=r"mixed\.jsonl, line 2: malformed JSON"):
        load_trials([path], strict=True)


def test_bad_json_documents(tmp_path):
    (tmp_path / "page.json").write_text(json.dumps({"studies": [{"nct_id": "NCT00000102"}, 3, {"x": 1}]}))
    (tmp_path / "broken.json").write_text('{"protocolSection": ')
    (tmp_path / "scalar.json").write_text("42")
    report = LoadReport()
    assert len(load_trials([tmp_path], report=report)) == 1
    assert sorted(e.source.split("/")[-1] for e in report.errors) == [
        "broken.json", "page.json, item 2", "page.json, item 3", "scalar.json",
    ]  # fmt: skip


def test_trial_from_document_rejects_other_documents():
    with pytest.raises(InvalidRecord, match="not an API v2 study"):
        trial_from_document({"title": "x"}, source="a.json")
    with pytest.raises(InvalidRecord, match="got list"):
        trial_from_document([1])
    with pytest.raises(InvalidRecord, match="field conditions must be a list of strings, got str"):
        trial_from_document(flat(conditions="Asthma"))


# --- the full corpus ----------------------------------------------------------------------------


@pytest.mark.skipif(not FULL_ZIP.exists(), reason="data/ctgov-legacy-xml-sample.zip is not here")
def test_full_legacy_zip_streams_7003_trials():
    report = LoadReport()
    start = time.perf_counter()
    count = sum(1 for _ in iter_trials([FULL_ZIP], report=report))
    elapsed = time.perf_counter() - start
    assert count == 7003 and report.errors == [] and report.duplicates == []
    assert report.summary() == "7003 trials loaded, 0 records skipped, 0 duplicate NCT IDs"
    assert elapsed < 120


def test_zip_of_json_members(tmp_path):
    path = tmp_path / "bulk.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("NCT00000102.json", (DATA / "apiv2-study.json").read_bytes())
        archive.writestr("pages/page-1.json", (DATA / "apiv2-page.json").read_bytes())
        archive.writestr("flat.jsonl", FLAT_SAMPLE.read_bytes() + b"{broken\n")
        archive.writestr("__MACOSX/._NCT00000102.json", b"\x00\x05")
    report = LoadReport()
    trials = list(iter_trials([path], report=report, progress=True))
    assert [t.nct_id for t in trials[:4]] == ["NCT00000102", "NCT00001163", "NCT00000630", "NCT00000168"]
    assert len(trials) == 1 + 3 + 10
    assert trials[1].source == f"{path}, member pages/page-1.json, item 1"
    assert trials[-1].source == f"{path}, member flat.jsonl, line 10"
    (error,) = report.errors
    assert error.source == f"{path}, member flat.jsonl, line 11"


def test_csv_bad_rows(tmp_path):
    header, first, *_ = CSV_SAMPLE.read_bytes().decode("utf-8").split("\r\n", 2)
    path = tmp_path / "rows.csv"
    path.write_text(f"{header}\r\n,no id\r\nNCT123,bad id\r\n{first}\r\n", encoding="utf-8")
    report = LoadReport()
    assert [t.nct_id for t in load_trials([path], report=report)] == ["NCT06954688"]
    assert [(e.source.rsplit(", ", 1)[1], e.reason) for e in report.errors] == [
        ("row 1", "the record has no NCT ID"),
        ("row 2", "malformed NCT ID 'NCT123'; expected NCT followed by 8 digits"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(f"{header}\r\n{first}\r\n".encode() + b"NCT00000102,caf\xe9\r\n")
    report = LoadReport()
    assert len(load_trials([bad], report=report)) == 1
    assert [(e.source.rsplit(", ", 1)[1], e.record, e.reason) for e in report.errors] == [
        ("row 2", "NCT00000102", "invalid UTF-8")
    ]
