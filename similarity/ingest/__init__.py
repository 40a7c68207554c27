"""Ingest: every source format -> normalised :class:`Trial` records (the registry's enums with them).

Formats: legacy ClinicalTrials.gov XML (:mod:`.xml`), API v2 study JSON (:mod:`.apiv2`), the
registry's CSV export (:mod:`.csv`) and flat records such as ``Trial.to_dict()`` output
(:mod:`.flat`). :mod:`.sources` walks paths, zips and directories and detects the format.

    >>> from similarity.ingest import load_trials, LoadReport
    >>> report = LoadReport()
    >>> trials = load_trials(["data/ctgov-legacy-xml-sample.zip"], report=report)
    >>> report.summary()
    '7003 trials loaded, 0 records skipped, 0 duplicate NCT IDs'
"""

from .sources import LoadReport, iter_trials, load_trials, trial_from_document
from .trial import (
    NCT_ID_PATTERN,
    Intervention,
    InterventionType,
    Phase,
    Status,
    StudyType,
    Trial,
    age_in_years,
    date_ordinal,
    format_phases,
    parse_phases,
)

__all__ = [
    "Intervention",
    "InterventionType",
    "LoadReport",
    "NCT_ID_PATTERN",
    "Phase",
    "Status",
    "StudyType",
    "Trial",
    "age_in_years",
    "date_ordinal",
    "format_phases",
    "iter_trials",
    "load_trials",
    "parse_phases",
    "trial_from_document",
]
