"""Hostile and broken input, through ``load_trials`` and through ``related-trials build``.

XML with external entities or entity expansion is refused without resolving anything; truncated
XML, invalid UTF-8, deeply nested or oversized JSON, megabyte fields, a record without an NCT ID:
each becomes a skipped record whose message names the file and the record. A default build skips
them, says how many and which, and exits 3; ``--strict`` stops at the first with exit 1 and leaves
the index already in the directory as it was. Nothing ends in a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from pathlib import Path

import pytest

import similarity.ingest.sources
from similarity.cli import main
from similarity.exceptions import InvalidRecord
from similarity.index import TrialIndex
from similarity.ingest import LoadReport, load_trials
from similarity.ingest._common import MAX_FIELD_CHARS

DATA = Path(__file__).parent / "data"
GOOD = DATA / "flat-sample.jsonl"  # 10 trials
GOOD_XML = (DATA / "xml" / "NCT00000102.xml").read_bytes()

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n'
        % (i, b"".join(b"&lol%s;" % (str(i - 1).encode() if i > 1 else b"") for _ in range(10)))
        for i in range(1, 10)
    )
    + b"]>\n<clinical_study><id_info><nct_id>NCT90000002</nct_id></id_info>"
    b"<brief_title>&lol9;</brief_title></clinical_study>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE clinical_study [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b"<clinical_study><id_info><nct_id>NCT90000001</nct_id></id_info>"
    b"<brief_title>&xxe;</brief_title></clinical_study>"
)
EXTERNAL_PARAMETER_ENTITY = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE clinical_study [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>\n'
    b"<clinical_study><id_info><nct_id>NCT90000005</nct_id></id_info></clinical_study>"
)


def _xml(nct_id: str, **elements: str) -> bytes:
    body = "".join(f"<{k}>{v}</{k}>" for k, v in elements.items())
    return f"<clinical_study><id_info><nct_id>{nct_id}</nct_id></id_info>{body}</clinical_study>".encode()


# file name -> (bytes, the reason the record is skipped). XML files are named after their NCT ID,
# as in the registry's dump, so a record is named even when its document cannot be parsed.
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "NCT90000001.xml": (EXTERNAL_ENTITY, "refused unsafe XML (EntitiesForbidden"),
    "NCT90000002.xml": (BILLION_LAUGHS, "refused unsafe XML (EntitiesForbidden"),
    "NCT90000003.xml": (GOOD_XML[: len(GOOD_XML) // 2], "malformed XML: "),
    "NCT90000004.xml": (
        GOOD_XML.replace(b"Congenital", b"Cong\xc3\x28enital", 1),
        "invalid UTF-8 at byte",
    ),
    "NCT90000005.xml": (EXTERNAL_PARAMETER_ENTITY, "refused unsafe XML (EntitiesForbidden"),
    "NCT90000006.xml": (
        GOOD_XML.replace(b"<nct_id>NCT00000102</nct_id>", b""),
        "the record has no NCT ID",
    ),
    "NCT90000007.xml": (
        _xml("NCT90000007", brief_summary=f"<textblock>{'word ' * 300_000}</textblock>"),
        "field brief_summary is 1500000 characters, over the limit of 1000000",
    ),
    "NCT90000008.xml": (
        b'<?xml version="1.0" encoding="utf-32"?>' + _xml("NCT90000008"),
        "unreadable XML encoding",
    ),
    "nested.json": (
        b'{"nct_id": "NCT90000009", "keywords": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "JSON nested too deeply",
    ),
    "truncated.json": ((DATA / "apiv2-study.json").read_bytes()[:500], "malformed JSON"),
}

# JSON Lines: line -> (bytes, reason, the record's NCT ID where the message can know it).
HUGE = "x" * (2 * MAX_FIELD_CHARS)
ARABIC_INDIC_ID = "NCT" + "\u0660" * 7 + "\u0661"  # \d matches these digits; an NCT ID has none
BAD_LINES: list[tuple[bytes, str, str | None]] = [
    (b'{"nct_id": "NCT90000010", "brief_title": "caf\xe9"}', "invalid UTF-8 at byte", None),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply", None),
    (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "JSON nested too deeply", None),
    (
        json.dumps({"nct_id": "NCT90000011", "detailed_description": HUGE}).encode(),
        f"field detailed_description is {len(HUGE)} characters, over the limit of "
        f"{MAX_FIELD_CHARS}",
        "NCT90000011",
    ),
    (
        b'{"brief_title": "a trial without an NCT ID"}',
        "not an API v2 study (no protocolSection) nor a flat record",
        None,
    ),
    (b'{"nct_id": null, "brief_title": "a null NCT ID"}', "the record has no NCT ID", None),
    (
        b'{"nct_id": "NCT90000012", "brief_title": "lone \\ud800 surrogate"}',
        "field brief_title is not valid Unicode",
        "NCT90000012",
    ),
    (
        b'{"nct_id": "NCT90000013", "enrollment": ' + b"9" * 5000 + b"}",
        "malformed JSON: Exceeds the limit",
        None,
    ),
    (b'{"protocolSection": {"identificationModule": {"nctId": "NCT9000', "malformed JSON", None),
    (
        json.dumps(
            {"protocolSection": {"identificationModule": {"nctId": ARABIC_INDIC_ID}}},
            ensure_ascii=False,
        ).encode(),
        "malformed NCT ID",
        None,
    ),
]

CSV_HEADER = (DATA / "csv-sample.csv").read_bytes().split(b"\r\n", 1)[0]
BAD_CSV_ROWS: list[tuple[bytes, str, str | None]] = [
    (b"NCT90000020,caf\xe9", "invalid UTF-8", "NCT90000020"),
    (b",a row without an NCT ID", "the record has no NCT ID", None),
]
EXPECTED_SKIPS = len(BAD_FILES) + len(BAD_LINES) + len(BAD_CSV_ROWS)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """A directory of hostile and broken sources, one bad record per file, line or row."""
    folder = tmp_path_factory.mktemp("hostile")
    for name, (data, _) in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "lines.jsonl").write_bytes(b"\n".join(line for line, _, _ in BAD_LINES) + b"\n")
    (folder / "rows.csv").write_bytes(
        b"\r\n".join([CSV_HEADER, *(row for row, _, _ in BAD_CSV_ROWS)]) + b"\r\n"
    )
    return folder


def expected_errors(folder: Path) -> list[tuple[str, str, str | None]]:
    """(source, reason, record) of every bad record in ``folder``, in reading order."""
    files = {
        name: [
            (str(folder / name), reason, name.removesuffix(".xml") if name[:3] == "NCT" else None)
        ]
        for name, (_, reason) in BAD_FILES.items()
    }
    lines, rows = folder / "lines.jsonl", folder / "rows.csv"
    files[lines.name] = [(f"{lines}, line {n}", *bad[1:]) for n, bad in enumerate(BAD_LINES, 1)]
    files[rows.name] = [(f"{rows}, row {n}", *bad[1:]) for n, bad in enumerate(BAD_CSV_ROWS, 1)]
    return [error for name in sorted(files) for error in files[name]]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def index_state(path: Path) -> tuple[str, str, list[str]]:
    """What a build must not touch: CURRENT, the current fingerprint, the build directories."""
    return (
        (path / "CURRENT").read_text(),
        TrialIndex.load(path).fingerprint,
        sorted(p.name for p in (path / "builds").iterdir()),
    )


# --- load_trials ------------------------------------------------------------------------------


def test_every_bad_record_is_skipped_and_named(hostile):
    report = LoadReport()
    start = time.perf_counter()
    trials = load_trials([hostile, GOOD], report=report)
    assert time.perf_counter() - start < 30  # no entity expansion, no quadratic blow-up
    assert [t.nct_id for t in trials] == [t.nct_id for t in load_trials([GOOD])]
    got = [(e.source, e.reason, e.record) for e in report.errors]
    for (source, reason, record), (want_source, want_reason, want_record) in zip(
        got, expected_errors(hostile), strict=True
    ):
        assert source == want_source
        assert reason.startswith(want_reason), (source, reason)
        assert record == want_record, source
    for error in report.errors:
        assert str(error).startswith(error.source)  # "FILE[, line N][, record NCT...]: reason"
        if error.record:
            assert f"record {error.record}" in str(error)
        assert len(str(error)) < 400  # a megabyte field is named, not echoed
    assert (
        report.summary()
        == f"10 trials loaded, {EXPECTED_SKIPS} records skipped, 0 duplicate NCT IDs"
    )


def test_nothing_is_resolved_or_expanded(hostile):
    report = LoadReport()
    start = time.perf_counter()
    load_trials(
        [hostile / "NCT90000001.xml", hostile / "NCT90000002.xml", hostile / "NCT90000005.xml"],
        report=report,
    )
    assert time.perf_counter() - start < 2  # 10^9 "lol"s were never built
    assert len(report.errors) == 3
    text = " ".join(str(e) for e in report.errors)
    assert "root:" not in text and "lollol" not in text


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_strict_load_raises_the_first_bad_record(hostile, name):
    with pytest.raises(InvalidRecord) as raised:
        load_trials([GOOD, hostile / name], strict=True)
    assert raised.value.source == str(hostile / name)
    assert raised.value.reason.startswith(BAD_FILES[name][1])


def test_oversized_document_is_skipped_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(similarity.ingest.sources, "MAX_DOCUMENT_BYTES", 2000)
    path = tmp_path / "big.jsonl"
    good_lines = GOOD.read_bytes().splitlines()
    small = [line for line in good_lines if len(line) < 2000]
    path.write_bytes(
        b"\n".join(
            [small[0], b'{"nct_id": "NCT90000030", "x": "' + b"y" * 10_000 + b'"}', small[1]]
        )
        + b"\n"
    )
    report = LoadReport()
    assert len(load_trials([path], report=report)) == 2
    (error,) = report.errors
    assert error.source == f"{path}, line 2" and error.reason == "line over 2000 bytes"


def test_duplicates_across_sources_warn_and_the_last_wins(caplog):
    xml, api = DATA / "xml" / "NCT00000102.xml", DATA / "apiv2-study.json"
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="similarity.ingest"):
        (trial,) = load_trials([xml, api], report=report)
    assert trial.source == str(api)
    assert report.duplicates == ["NCT00000102"]
    assert f"duplicate NCT ID NCT00000102 at {api} (first at {xml})" in caplog.text
    assert "the later record replaced the earlier: NCT00000102" in caplog.text
    (trial,) = load_trials([api, xml])
    assert trial.source == str(xml)


# --- related-trials build ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(hostile, tmp_path_factory):
    """A default build of the good sample, the hostile sources and a cross-format duplicate."""
    path = tmp_path_factory.mktemp("index")
    out, err = io.StringIO(), io.StringIO()
    sources = [GOOD, hostile, DATA / "xml" / "NCT00000102.xml", DATA / "apiv2-study.json"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["build", *map(str, sources), "--index", str(path), "-q"])
    return path, code, out.getvalue(), err.getvalue()


def test_build_skips_bad_records_says_which_and_exits_3(built, hostile):
    path, code, out, err = built
    assert code == 3, err
    assert f"11 trials loaded, {EXPECTED_SKIPS} records skipped, 1 duplicate NCT ID" in out
    assert "indexed 11 trials" in out
    assert "Traceback" not in out + err
    skipped = [line.strip() for line in err.splitlines() if line.strip().startswith("skipped: ")]
    assert len(skipped) == 20  # the CLI names the first 20, then counts the rest
    assert f"... and {EXPECTED_SKIPS - 20} more skipped records" in err
    for line, (source, reason, record) in zip(skipped, expected_errors(hostile)[:20], strict=True):
        assert line.startswith(f"skipped: {source}")
        assert reason in line
        assert record is None or f"record {record}" in line
    index = TrialIndex.load(path)
    assert len(index) == 11
    assert index.trial("NCT00000102") == load_trials([DATA / "apiv2-study.json"])[0]


@pytest.mark.parametrize("name", [*sorted(BAD_FILES), "lines.jsonl", "rows.csv"])
def test_strict_build_stops_at_the_first_and_leaves_the_index(capsys, built, hostile, name):
    path = built[0]
    before = index_state(path)
    code, out, err = run(capsys, "build", GOOD, hostile / name, "--index", path, "-q", "--strict")
    assert code == 1
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"related-trials: error: {hostile / name}")
    first = next(e for e in expected_errors(hostile) if e[0].startswith(str(hostile / name)))
    assert first[1] in line and (first[2] is None or f"record {first[2]}" in line)
    assert "indexed" not in out
    assert index_state(path) == before
    assert not [p for p in (path / "builds").iterdir() if p.name.startswith(".")]


def test_build_of_nothing_but_bad_records_says_how_many_and_why(capsys, built, hostile, tmp_path):
    code, out, err = run(
        capsys, "build", hostile / "lines.jsonl", "--index", tmp_path / "idx", "-q"
    )
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(
        f"related-trials: error: no trial to index: all {len(BAD_LINES)} records were skipped as bad ("
    )
    first_reasons = [reason for _, reason, _ in BAD_LINES[:3]]
    assert all(reason in line for reason in first_reasons), line
    assert f"... and {len(BAD_LINES) - 3} more" in line
    assert line.endswith("the index was left as it was")
    assert not (tmp_path / "idx" / "CURRENT").exists()
    # Over an existing index, nothing changes either.
    path = built[0]
    before = index_state(path)
    code, _, err = run(capsys, "build", hostile / "rows.csv", "--index", path, "-q")
    assert code == 1 and f"all {len(BAD_CSV_ROWS)} records were skipped as bad" in err
    assert index_state(path) == before


@pytest.mark.parametrize("nct_id", ["NCT00000102\n", "NCT0000010\u0662", "NCT00000102 x", "nct00000102"])
def test_nct_id_pattern_is_exact(nct_id):
    from similarity.ingest import NCT_ID_PATTERN, Trial

    assert not NCT_ID_PATTERN.match(nct_id)
    with pytest.raises(ValueError, match="NCT followed by 8 digits"):
        Trial(nct_id=nct_id, brief_title="t")