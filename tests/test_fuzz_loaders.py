"""Property-based fuzzing of every loader: whatever the bytes or values, the outcome is a ``Trial``
or an ``InvalidRecord`` / ``SourceError`` with a message, never another exception.

Generated inputs: legacy XML from random element trees (random text with control characters,
hostile DTDs, bogus encodings, truncation and byte damage) and plain random bytes; API v2 studies
from a strategy that mirrors the study's structure with a random JSON value possible in every
position; flat records with random types; CSV exports with random cells; JSON, JSONL and zip files
read through ``iter_trials``. Every trial that comes out must survive ``to_dict`` -> JSON ->
``trial_from_document`` unchanged (how an index stores and reloads it).

Each target counts its cases in ``CASES``; the counts are printed at the end of the module.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import tempfile
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from similarity.exceptions import InvalidRecord, SourceError
from similarity.ingest import LoadReport, iter_trials, trial_from_document
from similarity.ingest.csv import iter_csv
from similarity.ingest.xml import trial_from_xml
from similarity.ingest import InterventionType, Phase, Status, StudyType, Trial

# Zips with a member name twice are part of the fuzz, and zipfile warns as it writes them.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

DATA = Path(__file__).parent / "data"
CSV_HEADER = next(
    csv.reader([(DATA / "csv-sample.csv").read_text(encoding="utf-8-sig").split("\n", 1)[0]])
)

#: Cases run per target (a Counter, so a target that never ran reads 0).
CASES: collections.Counter[str] = collections.Counter()
#: Of those, how many gave a Trial (the rest an InvalidRecord or SourceError).
TRIALS: collections.Counter[str] = collections.Counter()

FUZZ = settings(
    database=None,  # no example database in the working tree: each run draws afresh
    deadline=None,  # a shared 2-core CI machine: timing is no property of the loaders
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(scope="module", autouse=True)
def _report_case_counts(request):
    # Thousands of skipped records would each log a warning; the messages are tested elsewhere.
    loaders_logger = logging.getLogger("similarity.ingest")
    level = loaders_logger.level
    loaders_logger.setLevel(logging.ERROR)
    yield
    loaders_logger.setLevel(level)
    lines = [
        f"  {name}: {n} cases, {TRIALS[name]} gave a Trial" for name, n in sorted(CASES.items())
    ]
    text = f"fuzz case counts ({sum(CASES.values())} in total):\n" + "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(text)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


def check_round_trip(trial: Trial) -> None:
    """A trial read back from its stored JSON form is the same trial."""
    stored = json.loads(json.dumps(trial.to_dict(), ensure_ascii=False))
    assert trial_from_document(stored) == trial


def outcome(target: str, load, *args, **kwargs) -> Trial | InvalidRecord | SourceError:
    """Run one loader call; anything but a Trial or one of the two package errors fails the test."""
    CASES[target] += 1
    try:
        result = load(*args, **kwargs)
    except (InvalidRecord, SourceError) as error:
        assert str(error).strip(), "an error without a message"
        return error
    assert isinstance(result, Trial), f"{load.__name__} returned {type(result).__name__}"
    TRIALS[target] += 1
    check_round_trip(result)
    return result


def read_all(target: str, path: Path) -> tuple[list[Trial], LoadReport]:
    """Read a file through ``iter_trials``; only SourceError may escape, records never crash."""
    CASES[target] += 1
    report = LoadReport()
    try:
        trials = list(iter_trials([path], report=report))
    except SourceError as error:
        assert str(path) in str(error)
        return [], report
    for error in report.errors:
        assert isinstance(error, InvalidRecord) and str(path) in str(error)
    for trial in trials:
        check_round_trip(trial)
    TRIALS[target] += bool(trials)
    return trials, report


# --- values -----------------------------------------------------------------------------------

# Text a registry record could hold: any character but surrogates, control characters included.
wild_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# Text with the characters that matter to the parsers and cleaners, to reach the valid paths often.
PLAIN_CHARACTERS = list("abcXYZ019 ,.:;|/()-*\n\r\t&<>'\"é中\u00a0\u2028")
plain_text = st.text(st.sampled_from(PLAIN_CHARACTERS + ["\x0b", "\x00", "\x1c"]), max_size=40)
xml_text = st.text(st.sampled_from(PLAIN_CHARACTERS), max_size=40)  # all legal in XML 1.0
text = st.one_of(plain_text, wild_text)
nct_ids = st.from_regex(r"NCT[0-9]{8}", fullmatch=True)
any_nct_id = st.one_of(
    nct_ids,
    nct_ids.map(lambda s: f"  {s}\n"),
    st.from_regex(r"NCT\d{6,9}", fullmatch=True),  # other scripts' digits, wrong lengths
    text,
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), text,
    st.text(st.characters(categories=("Cs",)), min_size=1, max_size=3),  # lone surrogates
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=10,
)


def spellings(enum) -> st.SearchStrategy[str]:
    """Current and legacy-looking spellings of an enumeration's members."""
    values = [m.value for m in enum]
    return st.sampled_from(values + [v.replace("_", " ").title() for v in values])


phase_values = st.one_of(
    spellings(Phase),
    st.sampled_from(["Phase 1/Phase 2", "N/A", "PHASE1|PHASE2", "Early Phase 1", "Phase 4"]),
    st.lists(spellings(Phase), max_size=3),
)
design_terms = st.sampled_from(
    [
        "Randomized", "N/A", "Non-Randomized", "Parallel Assignment", "Crossover", "Treatment",
        "Double (Participant, Investigator)", "None (Open Label)", "Cohort", "Prospective",
        "U.S. Fed", "NIH", "Industry", "Both", "Female", "ALL",
    ]
)  # fmt: skip
dates = st.one_of(
    st.sampled_from(["July 30, 1998", "January 2004", "2004-01", "2020-02-29", "Sept. 3, 2001"]),
    text,
)
ages = st.sampled_from(["18 Years", "N/A", "65 Years", "6 Months", "No limit"])
enrollments = st.one_of(
    st.integers(min_value=0, max_value=10**6), st.sampled_from(["120", "1,024", "", "²", "٣"])
)
healthy = st.one_of(st.booleans(), st.sampled_from(["Yes", "No", "Accepts Healthy Volunteers"]))


def maybe(proper: st.SearchStrategy) -> st.SearchStrategy:
    """A proper value most of the time, else null or any JSON value."""
    return st.one_of(proper, proper, proper, proper, proper, proper, st.none(), json_values)


def nullable(proper: st.SearchStrategy) -> st.SearchStrategy:
    """A proper value or null (unknown)."""
    return st.one_of(proper, proper, proper, st.none())


# --- flat records -----------------------------------------------------------------------------

FLAT_TEXT = [
    "brief_title", "official_title", "acronym", "org_study_id", "lead_sponsor", "brief_summary",
    "detailed_description", "why_stopped", "eligibility_criteria",
]  # fmt: skip
FLAT_LISTS = [
    "primary_outcomes",
    "conditions",
    "keywords",
    "condition_mesh",
    "intervention_mesh",
    "countries",
]
FLAT_TERMS = [
    "allocation", "intervention_model", "primary_purpose", "masking", "observational_model",
    "time_perspective", "gender", "sponsor_class",
]  # fmt: skip
interventions = st.lists(
    st.fixed_dictionaries(
        {"type": st.one_of(st.none(), spellings(InterventionType), text), "name": text}
    ),
    max_size=3,
)


def flat_fields(wrap) -> dict[str, st.SearchStrategy]:
    return {
        **{name: wrap(text) for name in FLAT_TEXT},
        **{name: wrap(st.lists(text, max_size=3)) for name in FLAT_LISTS},
        **{name: wrap(design_terms) for name in FLAT_TERMS},
        "overall_status": wrap(spellings(Status)),
        "study_type": wrap(spellings(StudyType)),
        "phase": wrap(phase_values),
        "start_date": wrap(dates),
        "completion_date": wrap(dates),
        "minimum_age": wrap(ages),
        "maximum_age": wrap(ages),
        "enrollment": wrap(enrollments),
        "healthy_volunteers": wrap(healthy),
        "interventions": wrap(interventions),
        "page_cut": wrap(st.booleans()),
        "source": wrap(text),
    }


valid_flat_records = st.fixed_dictionaries({"nct_id": nct_ids}, optional=flat_fields(nullable))
flat_records = st.one_of(
    valid_flat_records,
    st.fixed_dictionaries(
        {"nct_id": maybe(any_nct_id)}, optional={**flat_fields(maybe), "extra": json_values}
    ),
)


@settings(FUZZ, max_examples=700)
@given(flat_records)
def test_flat_records_with_random_types(doc):
    outcome("flat record (random types)", trial_from_document, doc, source="fuzz.jsonl, line 1")


@settings(FUZZ, max_examples=500)
@given(valid_flat_records)
def test_valid_flat_records_round_trip(doc):
    trial = trial_from_document(doc)
    CASES["flat record (valid, round trip)"] += 1
    TRIALS["flat record (valid, round trip)"] += 1
    assert trial_from_document(trial.to_dict()) == trial
    check_round_trip(trial)


# --- API v2 studies ---------------------------------------------------------------------------


def shaped(spec, wrap) -> st.SearchStrategy:
    """A study node shaped like ``spec`` (a dict of children, a one-item list, or a leaf strategy),
    every key optional, each node passed through ``wrap`` (``maybe`` puts junk anywhere)."""
    if isinstance(spec, dict):
        node = st.fixed_dictionaries({}, optional={k: shaped(v, wrap) for k, v in spec.items()})
    elif isinstance(spec, list):
        node = st.lists(shaped(spec[0], wrap), max_size=3)
    else:
        node = spec
    return wrap(node)


STUDY = {
    "protocolSection": {
        "identificationModule": {
            "nctId": any_nct_id, "orgStudyIdInfo": {"id": text}, "briefTitle": text,
            "officialTitle": text, "acronym": text,
        },
        "sponsorCollaboratorsModule": {"leadSponsor": {"name": text, "class": design_terms}},
        "descriptionModule": {"briefSummary": text, "detailedDescription": text},
        "statusModule": {
            "overallStatus": spellings(Status), "whyStopped": text,
            "startDateStruct": {"date": dates}, "completionDateStruct": {"date": dates},
        },
        "designModule": {
            "phases": st.lists(spellings(Phase), max_size=2), "studyType": spellings(StudyType),
            "designInfo": {
                "allocation": design_terms, "interventionModel": design_terms,
                "primaryPurpose": design_terms, "maskingInfo": {"masking": design_terms},
                "observationalModel": design_terms, "timePerspective": design_terms,
            },
            "enrollmentInfo": {"count": enrollments},
        },
        "outcomesModule": {"primaryOutcomes": [{"measure": text}]},
        "conditionsModule": {
            "conditions": st.lists(text, max_size=3), "keywords": st.lists(text, max_size=3),
        },
        "armsInterventionsModule": {
            "interventions": [{"type": spellings(InterventionType), "name": text}],
        },
        "eligibilityModule": {
            "eligibilityCriteria": text, "sex": design_terms, "minimumAge": ages,
            "maximumAge": ages, "healthyVolunteers": healthy,
        },
        "contactsLocationsModule": {"locations": [{"country": text, "city": text}]},
    },
    "derivedSection": {
        "conditionBrowseModule": {"meshes": [{"term": text}]},
        "interventionBrowseModule": {"meshes": [{"term": text}]},
    },
}  # fmt: skip


def _studies(wrap) -> st.SearchStrategy:
    modules = dict(STUDY["protocolSection"])
    identification = modules.pop("identificationModule")
    if wrap is maybe:  # the ID may be anything, or missing
        protocol = shaped(STUDY["protocolSection"], wrap)
    else:  # a valid ID, so that most of these studies reach every field
        protocol = st.fixed_dictionaries(
            {
                "identificationModule": st.fixed_dictionaries(
                    {"nctId": nct_ids},
                    optional={
                        k: shaped(v, wrap) for k, v in identification.items() if k != "nctId"
                    },
                )
            },
            optional={k: shaped(v, wrap) for k, v in modules.items()},
        )
    return st.fixed_dictionaries(
        {"protocolSection": protocol},
        optional={
            "derivedSection": shaped(STUDY["derivedSection"], wrap),
            "hasResults": json_values,
        },
    )


# Studies of the right shape (values may be null or unknown), and studies with junk anywhere.
studies = st.one_of(_studies(nullable), _studies(maybe))


@settings(FUZZ, max_examples=900)
@given(studies)
def test_apiv2_studies_with_random_types(doc):
    outcome("API v2 study", trial_from_document, doc, source="fuzz.json")


# --- legacy XML -------------------------------------------------------------------------------

XML_SCALARS = [
    "id_info/nct_id", "id_info/org_study_id", "brief_title", "official_title", "acronym",
    "sponsors/lead_sponsor/agency", "sponsors/lead_sponsor/agency_class", "brief_summary/textblock",
    "detailed_description/textblock", "overall_status", "why_stopped", "start_date",
    "completion_date", "phase", "study_type", "study_design_info/allocation",
    "study_design_info/masking", "enrollment", "eligibility/criteria/textblock",
    "eligibility/gender", "eligibility/minimum_age", "eligibility/healthy_volunteers",
]  # fmt: skip
XML_LISTS = [
    "primary_outcome/measure", "condition", "keyword", "condition_browse/mesh_term",
    "intervention_browse/mesh_term", "location_countries/country",
]  # fmt: skip
xml_values = {
    "overall_status": spellings(Status),
    "phase": phase_values.filter(lambda v: isinstance(v, str)),
    "study_type": spellings(StudyType),
    "enrollment": enrollments.map(str),
    "start_date": dates,
    "completion_date": dates,
    "eligibility/minimum_age": ages,
    "eligibility/healthy_volunteers": healthy.map(str),
}
tag_names = st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True)

HOSTILE_DTDS = [
    b"",
    b'<!DOCTYPE clinical_study [<!ENTITY a "zQentityQz"><!ENTITY b "&a;&a;&a;&a;">]>',
    b'<!DOCTYPE clinical_study [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE clinical_study [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    b'<!DOCTYPE clinical_study SYSTEM "http://127.0.0.1:9/x.dtd">',
    b"<!DOCTYPE clinical_study>",
]
DECLARATIONS = [
    b"", b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-8"?>',
    b'<?xml version="1.0" encoding="latin-1"?>', b'<?xml version="1.0" encoding="utf-16"?>',
    b'<?xml version="1.0" encoding="no-such-codec"?>', b'<?xml version="1.0" encoding="rot13"?>',
    b'<?xml version="1.0" encoding="utf-32"?>', b"\xef\xbb\xbf", b"\xff\xfe",
]  # fmt: skip


def _place(root: ET.Element, path: str) -> ET.Element:
    """The element at ``path`` under ``root``, created where missing (the last step always new)."""
    *parents, leaf = path.split("/")
    node = root
    for step in parents:
        child = node.find(step)
        node = ET.SubElement(node, step) if child is None else child
    return ET.SubElement(node, leaf)


@st.composite
def xml_documents(draw) -> bytes:
    hostile = draw(st.integers(0, 2)) == 0
    values = text if hostile else xml_text  # wild text holds characters XML 1.0 forbids
    root = ET.Element(
        draw(st.sampled_from(["clinical_study"] * 9 + ["other"])) if hostile else "clinical_study"
    )
    nct_id = draw(st.one_of(any_nct_id, values) if hostile else nct_ids)
    _place(root, "id_info/nct_id").text = nct_id
    for path in draw(st.lists(st.sampled_from(XML_SCALARS[1:]), unique=True)):
        _place(root, path).text = draw(st.one_of(xml_values.get(path, values), values))
    for path in draw(st.lists(st.sampled_from(XML_LISTS), max_size=4)):
        _place(root, path).text = draw(values)
    for _ in range(draw(st.integers(0, 2))):
        item = ET.SubElement(root, "intervention")
        ET.SubElement(item, "intervention_type").text = draw(
            st.one_of(spellings(InterventionType), values)
        )
        ET.SubElement(item, "intervention_name").text = draw(values)
    for _ in range(draw(st.integers(0, 2))):  # unknown elements, attributes, nesting
        node = _place(root, "/".join(draw(st.lists(tag_names, min_size=1, max_size=4))))
        node.set(draw(tag_names), draw(values))
        node.text = draw(values)
    body = ET.tostring(root, encoding="utf-8")  # control characters go out as they are
    if not hostile:
        return draw(st.sampled_from(DECLARATIONS[:3])) + body
    data = draw(st.sampled_from(DECLARATIONS)) + draw(st.sampled_from(HOSTILE_DTDS)) + body
    damage = draw(st.sampled_from(["none", "truncate", "insert", "entity"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif damage == "entity":  # a reference to an entity that may or may not be declared
        data = data.replace(b"</clinical_study>", b"&b;&e;</clinical_study>", 1)
    return data


@settings(FUZZ, max_examples=900)
@given(xml_documents())
def test_xml_documents_from_random_trees(data):
    result = outcome(
        "legacy XML (random trees)", trial_from_xml, data, source="fuzz.xml", record="NCT00000001"
    )
    if isinstance(result, Trial):
        dumped = json.dumps(result.to_dict())
        assert "root:" not in dumped and "zQentityQz" not in dumped  # no entity was ever resolved


@settings(FUZZ, max_examples=500)
@given(st.binary(max_size=300))
def test_xml_random_bytes(data):
    outcome("legacy XML (random bytes)", trial_from_xml, data, source="fuzz.xml")


# --- CSV export -------------------------------------------------------------------------------

csv_cells = {
    "NCT Number": any_nct_id,
    "Study Status": spellings(Status),
    "Phases": st.sampled_from(["PHASE1", "PHASE1|PHASE2", "NA", "EARLY_PHASE1", ""]),
    "Enrollment": enrollments.map(str),
    "Study Type": spellings(StudyType),
    "Interventions": st.lists(
        st.tuples(spellings(InterventionType), text).map(lambda p: f"{p[0]}: {p[1]}"), max_size=3
    ).map("|".join),
    "Study Design": st.lists(
        st.tuples(
            st.sampled_from(["Allocation", "Masking", "Time Perspective", "Other"]), design_terms
        ),
        max_size=3,
    ).map(lambda items: "|".join(f"{k}: {v}" for k, v in items)),
    "Locations": st.lists(text, max_size=3).map("|".join),
}


@st.composite
def csv_exports(draw) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for _ in range(draw(st.integers(1, 3))):
        writer.writerow(
            [draw(st.one_of(csv_cells.get(c, text), text)) for c in CSV_HEADER]
            + draw(st.lists(text, max_size=2))
        )
    data = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:  # byte damage: invalid UTF-8, NULs, stray quotes, truncation
        at = draw(st.integers(len(CSV_HEADER), len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at + draw(st.integers(0, 20)) :]
    return data


@settings(FUZZ, max_examples=500)
@given(csv_exports())
def test_csv_exports_with_random_cells(data):
    CASES["CSV export"] += 1
    results = list(iter_csv(io.BytesIO(data), source="fuzz.csv"))
    for result in results:
        assert isinstance(result, (Trial, InvalidRecord)), type(result)
        if isinstance(result, Trial):
            check_round_trip(result)
        else:
            assert result.source.startswith("fuzz.csv, row ")
    TRIALS["CSV export"] += any(isinstance(r, Trial) for r in results)


# --- files through iter_trials: JSON, JSONL, zips ---------------------------------------------

json_documents = st.one_of(
    studies, flat_records, st.lists(st.one_of(studies, flat_records), max_size=3),
    st.fixed_dictionaries({"studies": st.one_of(st.lists(studies, max_size=3), json_values)}),
    json_values,
)  # fmt: skip


def dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


json_lines = st.one_of(json_documents.map(dumps), st.binary(max_size=40)).filter(
    lambda b: b"\n" not in b
)


@settings(FUZZ, max_examples=300)
@given(document=json_documents.map(dumps), damage=st.binary(max_size=4), cut=st.integers(0, 2))
def test_json_files(scratch, document, damage, cut):
    path = scratch / "doc.json"
    path.write_bytes(document if not damage else document[: len(document) // (cut + 1)] + damage)
    read_all("JSON file", path)


@settings(FUZZ, max_examples=300)
@given(st.lists(json_lines, max_size=4))
def test_jsonl_files(scratch, lines):
    path = scratch / "lines.jsonl"
    path.write_bytes(b"\n".join(lines))
    trials, report = read_all("JSONL file", path)
    assert len(trials) + len(report.errors) <= len(lines)


@settings(FUZZ, max_examples=400)
@given(
    members=st.lists(
        st.tuples(
            st.sampled_from(["NCT00000102.xml", "a/b.json", "c.jsonl", "d.txt", "__MACOSX/e.xml"]),
            st.one_of(xml_documents(), json_documents.map(dumps), st.binary(max_size=50)),
        ),
        max_size=3,
    ),
    damage=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=8))),
    method=st.sampled_from(
        [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
    ),
)
def test_zip_files(scratch, members, damage, method):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    data = buffer.getvalue()
    if damage is not None:  # a damaged local header, member data or central directory
        at, junk = damage
        at = at % max(len(data), 1)
        data = data[:at] + junk + data[at + len(junk) :]
    path = scratch / "bulk.zip"
    path.write_bytes(data)
    read_all("zip file", path)
