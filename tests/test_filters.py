"""Registry filters: parsing, the index's compact columns against the records, and filtered lists."""

import datetime as dt
import itertools

import numpy as np
import pytest

from similarity import InvalidParameter, Ranker, load_trials
from similarity.index.store import trial_columns
from similarity.ingest import age_in_years, date_ordinal
from similarity.ranking import Filters

DATA = "tests/data"
SOURCES = {
    "legacy XML": f"{DATA}/legacy-sample.zip",
    "API v2": f"{DATA}/apiv2-studies.jsonl",
    "CSV export": f"{DATA}/csv-sample.csv",
}


def _day(text: str) -> int:
    return dt.date.fromisoformat(text).toordinal()


def test_registry_ages_and_dates():
    assert age_in_years("18 Years") == 18 and age_in_years("6 Months") == 0.5
    assert age_in_years("1 Year") == 1 and age_in_years("2 Weeks") == pytest.approx(14 / 365.25)
    assert age_in_years("N/A") is None and age_in_years(None) is None and age_in_years("") is None
    assert date_ordinal("2014-03") == _day("2014-03-01") and date_ordinal("2014") == _day("2014-01-01")
    assert date_ordinal("2014-02-30") is None and date_ordinal("March 2014") is None


def test_parse_spellings_and_errors():
    f = Filters.parse(country=["united states", "  Korea,  Republic of "], recruiting_only=True, age="40",
                      sex="Female", start_after="2010-05", start_before="2012")
    assert f.country == ("united states", "korea, republic of") and f.age == 40.0 and f.sex == "FEMALE"
    assert f.start_after == _day("2010-05-01") and f.start_before == _day("2012-12-31")
    assert Filters.parse(start_before="2012-02").start_before == _day("2012-02-29")
    assert Filters.parse(country="France").country == ("france",)
    assert not Filters() and Filters.parse(age=0) and Filters.parse(recruiting_only=True)
    empty = Filters.parse(start_after="2015", start_before="2014", country=[" "])  # keeps nothing, not an error
    assert empty and not empty.matches(load_trials([SOURCES["CSV export"]])[0])
    assert f.to_dict()["start_before"] == "2012-12-31" and f.to_dict()["sex"] == "FEMALE"
    for bad, match in [
        (dict(age=-1), "age must be"), (dict(age="forty"), "age must be"), (dict(age=151), "age must be"),
        (dict(age=True), "age must be"), (dict(age="nan"), "age must be"),
        (dict(sex="other"), "sex must be female or male"),
        (dict(start_after="2014/03/01"), "start_after must be a date"),
        (dict(start_before="yesterday"), "start_before must be a date"),
        (dict(start_after="0000"), "start_after must be a date"), (dict(start_before="2014-13"), "start_before"),
    ]:
        with pytest.raises(InvalidParameter, match=match):
            Filters.parse(**bad)


@pytest.mark.parametrize("source", SOURCES)
def test_each_source_format_gives_the_filtered_fields(source):
    trials = {t.nct_id: t for t in load_trials([SOURCES[source]])}
    checked = {
        # hand-checked against the records in tests/data
        "legacy XML": ("NCT00000102", dict(country=["UNITED STATES"], age=20, sex="male"), dict(age=36)),
        "API v2": ("NCT00460928", dict(country=["united states"], sex="female", start_after="2007-04",
                                       start_before="2007-04-30"), dict(sex="male")),
        "CSV export": ("NCT06018129", dict(country=["australia"], start_after="2023-09-21", start_before="2023-09-21"),
                       dict(country=["Belgium"])),
    }[source]
    nct_id, passes, fails = checked
    assert Filters.parse(**passes).matches(trials[nct_id])
    assert not Filters.parse(**fails).matches(trials[nct_id])


def _probes(trials):
    countries = sorted({c for t in trials for c in t.countries or ()})
    starts = sorted(t.start_date for t in trials if t.start_date)
    yield Filters.parse(recruiting_only=True)
    for country in countries:
        yield Filters.parse(country=[country.upper()])
    for age in (0, 0.5, 10, 17.9, 18, 40, 65, 66, 90, 150):
        yield Filters.parse(age=age)
    for sex in ("female", "male"):
        yield Filters.parse(sex=sex)
    for after, before in itertools.combinations([None, starts[0], starts[len(starts) // 2], starts[-1]], 2):
        yield Filters.parse(start_after=after, start_before=before)
    yield Filters.parse(country=countries[:2], age=30, sex="female", recruiting_only=True, status=["COMPLETED"])


@pytest.mark.parametrize("source", SOURCES)
def test_columns_filter_like_the_records(source):
    trials = load_trials([SOURCES[source]])
    columns = trial_columns(trials)
    hits = 0
    for probe in _probes(trials):
        expected = np.array([probe.matches(t) for t in trials])
        assert np.array_equal(probe.mask(columns), expected), probe
        hits += int(expected.sum())
    assert hits > len(trials)  # real values reach the filters, not only empty masks


def test_filtered_lists_are_exact_at_one_percent_selectivity(index, sample_trials):
    """A filter that keeps ~1% of the index: the list is every qualifying trial the ranker would
    consider, none other, in the order a brute-force re-ranking of exactly those trials gives."""
    ranker = Ranker(index, diversity=None)
    n = len(index)
    by_start = sorted((t.start_date, t.nct_id) for t in sample_trials if t.start_date)
    assert len(by_start) >= 3
    window = by_start[: max(1, round(0.01 * n))]
    f = Filters.parse(start_after=window[0][0], start_before=window[-1][0])
    qualifying = {t.nct_id for t in sample_trials if f.matches(t)}
    assert 1 <= len(qualifying) <= max(2, 0.05 * n)
    for query in sample_trials[:10]:
        got = [r.nct_id for r in ranker.related(query.nct_id, 10, filters=f)]
        want = qualifying - {query.nct_id}
        assert set(got) == set(list(want)[:10]) if len(want) <= 10 else set(got) <= want
        assert all(f.matches(index.trial(g)) for g in got)
        rows = np.array([index.row(g) for g in sorted(want)])
        if len(rows):
            _, _, order = ranker.rank(ranker.features(query.nct_id), rows)
            assert got == [index.nct_id(int(r)) for r in rows[order]][:10]


def test_cli_filters(index_dir, capsys):
    from similarity.cli import main

    query = "NCT00000102"
    assert main(["related", query, "--index", str(index_dir), "-k", "50", "--json", "--country", "united states",
                 "--age", "20", "--sex", "male", "--start-after", "1990"]) == 0
    import json

    listed = json.loads(capsys.readouterr().out)
    f = Filters.parse(country=["united states"], age=20, sex="male", start_after="1990")
    from similarity import TrialIndex

    index = TrialIndex.load(index_dir)
    assert listed and all(f.matches(index.trial(r["nct_id"])) for r in listed)
    assert main(["related", query, "--index", str(index_dir), "--age", "-3"]) == 1
    assert "age must be a number of years" in capsys.readouterr().err
    assert main(["related", query, "--index", str(index_dir), "--start-before", "soon"]) == 1
    assert "start_before must be a date" in capsys.readouterr().err
