"""The CLI end to end on a saved index: output shapes and one-line errors."""

import json

import pytest

from similarity.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_related_json_shape(capsys, index_dir):
    code, out, err = run(capsys, "related", "NCT02213705", "--index", index_dir, "-k", "3", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 3
    for row in rows:
        assert {"nct_id", "title", "status", "phase", "score", "why"} <= set(row)
        assert row["nct_id"] != "NCT02213705"


def test_related_human_output_looks_like_the_seed_list(capsys, index_dir, index):
    code, out, _ = run(capsys, "related", "NCT02213705", "--index", index_dir, "-k", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("More Related Trials for NCT02213705")
    first = index.trial(lines[3].split()[0])
    assert lines[2] == first.title
    assert lines[3] == f"{first.nct_id} {first.overall_status.value if first.overall_status else 'UNKNOWN'} {first.phase or 'NA'}"


def test_related_filters(capsys, index_dir):
    code, out, _ = run(capsys, "related", "NCT02213705", "--index", index_dir, "--status", "Completed", "--json")
    assert code == 0
    assert {r["status"] for r in json.loads(out)} == {"COMPLETED"}


@pytest.mark.slow
def test_related_document(capsys, index_dir, data_dir):
    code, out, err = run(capsys, "related", "--document", data_dir / "apiv2-study.json", "--index", index_dir, "--json")
    assert code == 0, err
    assert len(json.loads(out)) == 10


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["related", "NCT99999999"], "'NCT99999999' is not in the index", 1),
        (["related", "NCT02213705", "-k", "0"], "-k must be between 1 and 1000", 1),
        (["related", "NCT02213705", "-k", "ten"], "invalid int value", 2),
        (["related", "NCT02213705", "--status", "Finished"], "unknown Status 'Finished'", 1),
        (["related", "--document", "/no/such.json"], "cannot read /no/such.json", 1),
        (["related"], "give either an NCT_ID or --document", 1),
    ],
)
def test_related_errors_are_one_line(capsys, index_dir, argv, message, code):
    got, out, err = run(capsys, *argv, "--index", index_dir)
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_missing_index_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "related", "NCT02213705", "--index", tmp_path)
    assert code == 1 and "no index in" in err and len(err.strip().splitlines()) == 1


def test_build_from_mixed_formats_and_bad_input(capsys, tmp_path, data_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nct_id": "NCT00000102", "brief_title": "ok"}\n{"brief_title": "no id"}\n{not json\n')
    code, out, err = run(capsys, "build", data_dir / "flat-sample.jsonl", bad, "--index", tmp_path / "idx", "-q")
    assert code == 3, err  # built, but said that records were skipped
    assert "2 records skipped" in out
    assert "bad.jsonl" in err
    code, out, err = run(capsys, "build", bad, "--index", tmp_path / "idx", "-q", "--strict")
    assert code == 1 and "bad.jsonl" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "build", tmp_path / "missing.zip", "--index", tmp_path / "idx", "-q")
    assert code == 1 and "missing.zip" in err


def test_build_layout_flags(capsys, tmp_path, data_dir):
    from similarity import TrialIndex

    code, out, err = run(capsys, "build", data_dir / "flat-sample.jsonl", "--index", tmp_path / "fast", "-q", "--fast",
                         "--neighbours", "5", "--backend", "ivf-sq8", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    index = TrialIndex.load(tmp_path / "fast")
    assert index.config.text_fields == ("brief_title", "conditions", "interventions")
    assert index.config.term_fields == ("conditions", "interventions")
    assert index.backend.name == "ivf-sq8" and index.backend.neighbours.k == 5
    for flags, message in [
        (["--fields", "title,bogus"], "unknown text field(s) 'bogus'; allowed: title, brief_title"),
        (["--fields", "title", "--fast"], "give --fields or --fast, not both"),
        (["--term-fields", "summary"], "term_fields must be among"),
        (["--neighbours", "-1"], "neighbours must be >= 0"),
    ]:
        code, out, err = run(capsys, "build", data_dir / "flat-sample.jsonl", "--index", tmp_path / "bad", "-q", *flags)
        assert code == 1 and message in err and "Traceback" not in err, (flags, err)
    assert not (tmp_path / "bad" / "CURRENT").exists()


def test_evaluate_json_shape(capsys, index_dir, index, tmp_path):
    ids = [t.nct_id for t in index.trials]
    pairs = tmp_path / "pairs.tsv"
    rows = ["query_id\tcandidate_id\tlabel"]
    rows += [f"{ids[0]}\t{c}\t{int(i < 2)}" for i, c in enumerate(ids[1:6])]
    rows += [f"{ids[6]}\t{c}\t0" for c in ids[7:9]]  # no positive: skipped
    pairs.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "evaluate", "--index", index_dir, "--pairs", pairs, "--json", "--baselines", "tfidf,bm25")
    assert code == 0, err
    result = json.loads(out)
    assert result["queries"] == 1 and result["skipped"] == 1
    assert set(result["methods"]) == {"engine", "tfidf", "bm25"}
    assert set(result["methods"]["engine"]) == {"P@1", "P@2", "P@5", "R@1", "R@2", "R@5", "nDCG@5", "nDCG@10", "MAP", "MRR"}
    code, out, err = run(capsys, "evaluate", "--index", index_dir, "--pairs", pairs, "--json", "--baselines", "bm25", "--mode", "retrieve")
    assert code == 0, err
    assert {"R@10", "R@50", "nDCG@10"} <= set(json.loads(out)["methods"]["engine"])


def test_evaluate_errors(capsys, index_dir, tmp_path):
    code, _, err = run(capsys, "evaluate", "--index", index_dir, "--pairs", tmp_path / "none.tsv")
    assert code == 1 and "cannot read pairs file" in err
    code, _, err = run(capsys, "evaluate", "--index", index_dir, "--pairs", tmp_path / "none.tsv", "--mode", "sideways")
    assert code == 2 and "invalid choice" in err
