import pytest

from similarity import InterventionType, InvalidParameter, Phase, Status, StudyType, Trial
from similarity.ingest import format_phases, parse_phases


@pytest.mark.parametrize(
    "legacy, current, member",
    [
        ("Active, not recruiting", "ACTIVE_NOT_RECRUITING", Status.ACTIVE_NOT_RECRUITING),
        ("Unknown status", "UNKNOWN", Status.UNKNOWN),
        ("Not yet recruiting", "NOT_YET_RECRUITING", Status.NOT_YET_RECRUITING),
        ("Enrolling by invitation", "ENROLLING_BY_INVITATION", Status.ENROLLING_BY_INVITATION),
        ("Completed", "COMPLETED", Status.COMPLETED),
    ],
)
def test_status_parses_both_spellings(legacy, current, member):
    assert Status.parse(legacy) is member
    assert Status.parse(current) is member


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Phase 1/Phase 2", (Phase.PHASE1, Phase.PHASE2)),
        ("PHASE1|PHASE2", (Phase.PHASE1, Phase.PHASE2)),
        ("PHASE1/PHASE2", (Phase.PHASE1, Phase.PHASE2)),
        (["PHASE2", "PHASE1"], (Phase.PHASE1, Phase.PHASE2)),
        ("Early Phase 1", (Phase.EARLY_PHASE1,)),
        ("EARLY_PHASE1", (Phase.EARLY_PHASE1,)),
        ("N/A", (Phase.NA,)),
        ("NA", (Phase.NA,)),
        (None, None),
        ("", None),
    ],
)
def test_parse_phases(value, expected):
    assert parse_phases(value) == expected


def test_phase_format_matches_the_registry_page():
    assert format_phases((Phase.PHASE1, Phase.PHASE2)) == "PHASE1/PHASE2"


@pytest.mark.parametrize(
    "enum, legacy, current",
    [
        (InterventionType, "Biological", "BIOLOGICAL"),
        (InterventionType, "Dietary Supplement", "DIETARY_SUPPLEMENT"),
        (StudyType, "Observational [Patient Registry]", "OBSERVATIONAL"),
        (StudyType, "Expanded Access", "EXPANDED_ACCESS"),
    ],
)
def test_other_enums_parse_both_spellings(enum, legacy, current):
    assert enum.parse(legacy) is enum.parse(current)


def test_unknown_value_names_the_allowed_ones():
    with pytest.raises(InvalidParameter, match="allowed values: .*RECRUITING"):
        Status.parse("Almost done")


def test_trial_rejects_a_malformed_nct_id():
    with pytest.raises(InvalidParameter, match="NCT followed by 8 digits"):
        Trial(nct_id="NCT123")


def test_missing_values_stay_missing():
    trial = Trial(nct_id="NCT00000102")
    assert trial.phases is None and trial.overall_status is None and trial.interventions is None
    assert trial.intervention_types is None
    assert trial.summary() == {"nct_id": "NCT00000102", "title": "NCT00000102", "status": None, "phase": None}
