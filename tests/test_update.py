"""Incremental updates give the index a full rebuild gives, re-embedding only what changed."""

import dataclasses

import numpy as np
import pytest

from similarity import IndexConfig, Ranker, Status, TrialIndex, build_index
from similarity.cli import main
from similarity.features import text_table
from similarity.features import BM25Vectorizer
from similarity.index import update_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def scenario(sample_trials, cache_dir):
    """A base index, an update (2 edited, 1 status change, 4 new, 2 removed) and the final trials."""
    base_trials, new_trials = sample_trials[:-4], sample_trials[-4:]
    # float16 vectors: an update must give the full rebuild's index bit for bit (int8 codes are
    # quantised again by an update: tests/test_quantized.py checks them within one step)
    base = build_index(base_trials, IndexConfig(neighbours=40, vectors="float16"), cache_dir=cache_dir)
    edited = [
        dataclasses.replace(base_trials[3], brief_summary="A randomised trial of low-dose aspirin in migraine."),
        dataclasses.replace(base_trials[5], brief_title=base_trials[5].brief_title + " (extension study)"),
    ]
    status = dataclasses.replace(base_trials[7], overall_status=Status.TERMINATED)
    removed = [base_trials[0].nct_id, base_trials[9].nct_id]
    unchanged = next(t for t in base_trials[10:] if t.overall_status is not Status.WITHDRAWN)
    changes = [*edited, status, unchanged, *new_trials]
    updated, report = update_index(base, changes, remove=removed, cache_dir=cache_dir)
    replaced = {t.nct_id: t for t in [*edited, status]}
    final = [replaced.get(t.nct_id, t) for t in base_trials if t.nct_id not in removed] + new_trials
    return base, updated, report, final, removed


def _rows(index):
    return {t.nct_id: i for i, t in enumerate(index.trials)}


def test_update_reports_what_changed(scenario):
    base, updated, report, final, removed = scenario
    assert sorted(report.changed) == sorted([base.trials[3].nct_id, base.trials[5].nct_id, base.trials[7].nct_id])
    assert len(report.added) == 4 and sorted(report.removed) == sorted(removed)
    new_fields = int((text_table(final[-4:], base.config.text_fields) != None).sum())  # noqa: E711
    # one summary and one title, each changing the whole text too, and the new trials
    assert report.fields_embedded == 2 * 2 + new_fields
    assert len(updated) == len(final) and updated.manifest.count == len(final)
    assert updated.manifest.updated_from == base.fingerprint
    assert len(base) == len(final) - 4 + 2  # the base index is left as it was


def test_update_equals_a_full_rebuild(scenario, cache_dir):
    _, updated, _, final, _ = scenario
    full = build_index(final, IndexConfig(neighbours=40, vectors="float16"), cache_dir=cache_dir)
    assert updated.fingerprint == full.fingerprint
    order = [_rows(updated)[t.nct_id] for t in full.trials]
    np.testing.assert_array_equal(updated.field_vectors[order], full.field_vectors)
    assert (updated.structured[order] != full.structured).nnz == 0
    assert updated.lexical_vectorizer.vectorizer_.vocabulary_ == full.lexical_vectorizer.vectorizer_.vocabulary_
    np.testing.assert_allclose(updated.lexical_vectorizer.idf_, full.lexical_vectorizer.idf_, rtol=1e-6)
    np.testing.assert_allclose(updated.lexical[order].toarray(), full.lexical.toarray(), rtol=1e-5, atol=1e-6)
    a, b = Ranker(updated), Ranker(full)
    for trial in final[::5]:
        got, want = a.related(trial.nct_id, 10), b.related(trial.nct_id, 10)
        assert [r.nct_id for r in got] == [r.nct_id for r in want]
        np.testing.assert_allclose([r.score for r in got], [r.score for r in want], rtol=1e-5)


def test_withdrawn_trials_are_removed(sample_trials, cache_dir):
    base = build_index(sample_trials[:10], cache_dir=cache_dir)
    withdrawn = dataclasses.replace(sample_trials[2], overall_status=Status.WITHDRAWN)
    updated, report = update_index(base, [withdrawn], cache_dir=cache_dir)
    assert report.removed == [sample_trials[2].nct_id] and sample_trials[2].nct_id not in updated
    assert report.fields_embedded == 0


def test_status_change_reuses_every_vector(sample_trials, cache_dir, monkeypatch):
    base = build_index(sample_trials[:10], cache_dir=cache_dir)
    from similarity.features import TextFeaturizer

    def no_model(*args, **kwargs):
        raise AssertionError("no text changed: the model must not be loaded")

    monkeypatch.setattr(TextFeaturizer, "fit", no_model)
    changed = dataclasses.replace(sample_trials[4], overall_status=Status.COMPLETED if sample_trials[4].overall_status != Status.COMPLETED else Status.TERMINATED)
    updated, report = update_index(base, [changed])
    assert report.changed == [changed.nct_id] and report.fields_reused == 10 * len(base.config.text_fields)
    np.testing.assert_array_equal(updated.field_vectors, base.field_vectors)


def test_update_rejects_duplicates_and_emptying(sample_trials, cache_dir):
    base = build_index(sample_trials[:3], cache_dir=cache_dir)
    with pytest.raises(ValueError, match="duplicate NCT IDs"):
        update_index(base, [sample_trials[5], sample_trials[5]])
    with pytest.raises(ValueError, match="empty"):
        update_index(base, remove=[t.nct_id for t in sample_trials[:3]])


def test_bm25_counts_round_trip():
    docs = ["stem cells scleroderma skin", "scleroderma scleroderma skin skin skin", "diabetes insulin", "x"]
    est = BM25Vectorizer(stop_words=None).fit(docs)
    counts = est.vectorizer_.transform(docs)
    recovered = est.counts_of(est.transform(docs))
    np.testing.assert_array_equal(recovered.toarray(), counts.toarray())
    refit = est.refit_counts(counts[:2], {t: j for j, t in enumerate(sorted(est.vectorizer_.vocabulary_))})
    direct = BM25Vectorizer(stop_words=None).fit(docs[:2])
    assert refit.avgdl_ == pytest.approx(direct.avgdl_)


def test_cli_update(index_dir, sample_trials, tmp_path, data_dir, capsys):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    before = TrialIndex.load(copy)
    gone = before.trials[1].nct_id
    code = main(["update", str(data_dir / "flat-sample.jsonl"), "--index", str(copy), "--remove", gone, "NCT99999999", "-q"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "updated" in out.out and "NCT99999999" in out.err
    after = TrialIndex.load(copy)
    assert gone not in after and len(after) == len(before) - 1
    assert main(["update", "--index", str(copy)]) == 1
