import copy
import dataclasses
import json

import numpy as np
import pytest

from similarity import IndexConfig, IndexMismatch, IndexNotFound, TrialIndex, TrialNotFound, build_index, update_index
from similarity.index import SCHEMA_VERSION, Manifest
from similarity.index.manifest import package_versions


def test_manifest_describes_the_build(index, sample_trials):
    m = index.manifest
    assert m.model == "all-MiniLM-L6-v2" and m.dim == 384
    assert m.count == len(sample_trials) == len(index)
    assert m.text_fields == ("brief_title", "conditions", "interventions", "summary", "text")
    assert {"faiss", "numpy", "scikit-learn", "sentence-transformers", "torch"} <= set(m.versions)
    assert len(m.fingerprint) == 64 and m.built_at
    assert m.schema_version == SCHEMA_VERSION and m.blend is None


def test_loaded_index_holds_the_same_trials(index, sample_trials):
    assert [t.nct_id for t in index.trials] == [t.nct_id for t in sample_trials]
    assert list(index.trials) == sample_trials
    assert index.field_vectors.shape == (len(sample_trials), 5, 384)


def test_unknown_nct_id(index):
    with pytest.raises(TrialNotFound, match="'NCT99999999' is not in the index"):
        index.row("NCT99999999")


def test_mismatched_layout_fails_loudly(index_dir):
    with pytest.raises(IndexMismatch, match="model is 'all-MiniLM-L6-v2', expected 'other-model'"):
        TrialIndex.load(index_dir, expect=IndexConfig(model="other-model"))
    with pytest.raises(IndexMismatch, match="text_fields"):
        TrialIndex.load(index_dir, expect=IndexConfig(text_fields=("title",)))


def test_missing_index(tmp_path):
    with pytest.raises(IndexNotFound, match="no index in"):
        TrialIndex.load(tmp_path)


def test_other_format_version_fails_loudly(index_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text()
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["format_version"] = 999
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="index format 999"):
        TrialIndex.load(copy)


def test_save_switches_atomically_and_keeps_the_previous_build_on_failure(index, tmp_path, monkeypatch):
    index = copy.copy(index)  # save() sets index.path; the session's index must keep its own
    first = index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "CURRENT").read_text() == first.name

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "idx")
    monkeypatch.undo()
    assert (tmp_path / "idx" / "CURRENT").read_text() == first.name
    reloaded = TrialIndex.load(tmp_path / "idx")
    assert reloaded.fingerprint == index.fingerprint
    visible = [p for p in (tmp_path / "idx" / "builds").iterdir() if not p.name.startswith(".")]
    assert visible == [first]


def test_build_rejects_duplicates_and_empty(sample_trials):
    with pytest.raises(ValueError, match="zero trials"):
        build_index([])
    with pytest.raises(ValueError, match="duplicate NCT IDs"):
        build_index([sample_trials[0], sample_trials[0]])


def test_numpy_backend_gives_the_same_lists_as_faiss(sample_trials, index, ranker, tmp_path):
    from similarity import Ranker

    exact = build_index(sample_trials, IndexConfig(backend="numpy"), cache_dir=str(tmp_path))
    assert exact.backend.name == "numpy" and index.backend.name == "flat"
    oracle = Ranker(exact)
    for trial in sample_trials[:10]:
        a = [r.nct_id for r in ranker.related(trial.nct_id, 5)]
        b = [r.nct_id for r in oracle.related(trial.nct_id, 5)]
        assert a == b


def _schema_1(manifest: Manifest) -> dict:
    """The untyped manifest dict that builds wrote before the Manifest class (schema 1)."""
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(manifest.config).items()}
    del config["term_fields"]  # older still: builds before term_fields
    return {
        "format_version": 1,
        "config": config,
        "model": manifest.model,
        "dim": manifest.dim,
        "normalized": True,
        "text_fields": list(manifest.text_fields),
        "structured_columns": list(manifest.structured_columns),
        "backend": manifest.backend,
        "count": manifest.count,
        "fingerprint": manifest.fingerprint,
        "built_at": "2026-01-01T00:00:00+00:00",
        "build_seconds": 1.5,
        "versions": {"numpy": "1.0"},
        "neighbours": 0,
        "blend": {"method": "rrf", "k": 60},
    }


def test_a_schema_1_manifest_is_read_and_written_back_as_the_current_schema(index_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text()
    old = _schema_1(Manifest.read(build / "manifest.json"))
    (build / "manifest.json").write_text(json.dumps(old))
    loaded = TrialIndex.load(copy)
    m = loaded.manifest
    assert m.schema_version == SCHEMA_VERSION and m.count == old["count"] and m.fingerprint == old["fingerprint"]
    assert m.config.term_fields == () and m.config.text_fields == tuple(old["text_fields"])
    assert m.blend == {"method": "rrf", "k": 60} and m.versions == {"numpy": "1.0"}
    assert m.built_at == old["built_at"] and m.build_seconds == 1.5
    saved = json.loads((loaded.save(copy) / "manifest.json").read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and saved["blend"] == old["blend"]
    assert Manifest.from_dict(saved) == m


@pytest.mark.parametrize("damage", [{"count": "many"}, {"config": None}, {"dim": None}, {"fingerprint": None}])
def test_a_malformed_manifest_is_a_one_line_mismatch(index_dir, tmp_path, damage):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text()
    data = json.loads((build / "manifest.json").read_text())
    for key, value in damage.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    (build / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexMismatch, match="malformed manifest"):
        TrialIndex.load(copy)


def test_update_refreshes_the_manifest_but_keeps_the_blend(index, sample_trials):
    stale = copy.copy(index)
    stale.manifest = dataclasses.replace(index.manifest, versions={"numpy": "1.0"}, blend={"method": "rrf", "k": 60})
    updated, _ = update_index(stale, remove=[sample_trials[0].nct_id])
    m = updated.manifest
    assert m.versions == package_versions() and m.updated_from == index.fingerprint
    assert m.blend == {"method": "rrf", "k": 60} and m.count == len(index) - 1
    assert m.update["removed"] == 1 and m.fingerprint != index.fingerprint
