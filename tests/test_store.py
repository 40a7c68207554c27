import shutil

import numpy as np
import pytest

from similarity import IndexMismatch, Ranker, TrialIndex
from similarity.ranking import Filters
from similarity.index._files import NpyRows, save_npy
from similarity.index.store import RowLookup, TrialStore, column_mask, trial_columns
from similarity.ingest import InterventionType, Phase, Status, StudyType


def test_loaded_index_reads_records_on_demand(index, sample_trials):
    store = index.trials
    assert isinstance(store, TrialStore) and len(store) == len(sample_trials)
    assert store._get.cache_info().currsize <= 64  # not every record parsed at load
    assert store[3] == sample_trials[3] and store[-1] == sample_trials[-1]
    assert store[1:4] == sample_trials[1:4]
    assert list(store) == sample_trials
    with pytest.raises(IndexError):
        store[len(store)]


def test_columns_filter_like_the_records(index, sample_trials):
    assert [index.nct_id(i) for i in range(len(index))] == [t.nct_id for t in sample_trials]
    cases = [("status", v) for v in Status] + [("phase", v) for v in Phase]
    cases += [("intervention_type", v) for v in InterventionType] + [("study_type", v) for v in StudyType]
    hits = 0
    for name, value in cases:
        probe = Filters(**{name: (value,)})
        expected = np.array([probe.matches(t) for t in sample_trials])
        assert np.array_equal(column_mask(index.columns, name, value), expected), (name, value)
        hits += int(expected.sum())
    assert hits > len(sample_trials)  # the fixtures exercise real values, not only empty masks


def test_phase_and_sponsor_columns(sample_trials):
    columns = trial_columns(sample_trials)
    names = columns["sponsor_names"]
    for t, code in zip(sample_trials, columns["sponsor"]):
        assert (names[code] if code >= 0 else None) == t.lead_sponsor
    assert columns["phase_ordinal"].dtype == np.float32 and len(columns["phase_ordinal"]) == len(sample_trials)


def test_row_lookup():
    rows = RowLookup(np.array([b"NCT00000003", b"NCT00000001", b"NCT00000002"]))
    assert rows["NCT00000001"] == 1 and "NCT00000002" in rows and len(rows) == 3
    assert list(rows) == ["NCT00000003", "NCT00000001", "NCT00000002"]
    for missing in ("NCT00000004", "NCT000000011", "", "NCTé", 12, None):
        assert missing not in rows
    with pytest.raises(KeyError):
        rows["NCT00000009"]


def test_builds_without_columns_still_load(index_dir, tmp_path, sample_trials):
    copy = tmp_path / "old"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text().strip()
    (build / "columns.npz").unlink()
    old = TrialIndex.load(copy)
    assert [old.nct_id(i) for i in range(len(old))] == [t.nct_id for t in sample_trials]
    assert [r.nct_id for r in Ranker(old).related(sample_trials[0].nct_id, 5)] == [
        r.nct_id for r in Ranker(TrialIndex.load(index_dir)).related(sample_trials[0].nct_id, 5)
    ]


def test_damaged_record_fails_clearly_when_read(index_dir, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text().strip()
    lines = (build / "trials.jsonl").read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"
    (build / "trials.jsonl").write_text("".join(lines))
    damaged = TrialIndex.load(copy)
    assert damaged.trials[1].nct_id
    with pytest.raises(IndexMismatch, match="record 3 is unreadable"):
        damaged.trials[2]
    with pytest.raises(IndexMismatch, match="a file of the build is unreadable"):  # read whole: at load
        TrialIndex.load(copy, mmap=False)


@pytest.mark.parametrize(
    "name", ["columns.npz", "field_vectors.npy", "lexical.data.npy", "structured.indices.npy", "encoders.joblib",
             "backend/vectors.faiss"]
)
def test_damaged_build_file_is_a_clear_error(index_dir, tmp_path, name):
    copy = tmp_path / "damaged"
    shutil.copytree(index_dir, copy)
    build = copy / "builds" / (copy / "CURRENT").read_text().strip()
    (build / name).write_bytes((build / name).read_bytes()[:60])
    with pytest.raises(IndexMismatch, match="a file of the build is unreadable .*rebuild it"):
        TrialIndex.load(copy)


ROW_KEYS = [0, -1, 3, np.int64(2), slice(None), slice(1, 4), slice(None, None, 2), slice(None, None, -1),
            [4, 0, 0, 2], np.array([[1, 2], [3, 4]]), np.array([], dtype=np.int64), (slice(1, 3), 1),
            ([3, 1], 2), (2, 1), (2, slice(None), 1), (np.array([[1, 2], [3, 4]]), 1, slice(1, 3))]


@pytest.mark.parametrize("key", ROW_KEYS, ids=repr)
def test_rows_read_from_disk_index_like_the_array(tmp_path, key):
    array = np.arange(5 * 3 * 4, dtype=np.int8).reshape(5, 3, 4)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    got = rows[key]
    assert got.dtype == array.dtype and got.shape == array[key].shape
    assert np.array_equal(got, array[key])


def test_rows_read_from_disk(tmp_path):
    array = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float16)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(tmp_path / "a.npy")
    assert (rows.shape, rows.dtype, rows.ndim, len(rows), rows.nbytes) == (array.shape, array.dtype, 2, 50, array.nbytes)
    assert np.array_equal(np.asarray(rows, dtype=np.float32), array.astype(np.float32))
    for bad in (50, -51, [0, 50]):
        with pytest.raises(IndexError, match="out of range"):
            rows[bad]
    with pytest.raises(IndexError, match="integers or slices"):
        rows[[1, 2], [0, 1]]  # numpy would pair the two keys: not supported, not silently different
    (tmp_path / "a.npy").unlink()  # a pruned build: the open file still reads, and copies whole
    save_npy(tmp_path / "copy.npy", rows)
    assert np.array_equal(np.load(tmp_path / "copy.npy"), array)
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 2))))
    with pytest.raises(ValueError, match="Fortran"):
        NpyRows(tmp_path / "f.npy")

