"""int8 field vectors: codes within half a step of the float16 vectors, the same lists, saved and updated."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from similarity import IndexConfig, Ranker, TrialIndex
from similarity.exceptions import IndexMismatch, InvalidParameter
from similarity.index import assemble, update_index
from similarity.index._files import NpyRows
from similarity.index.quantized import SCALE_FILE, QuantizedVectors, store_field_vectors


@pytest.fixture(scope="module")
def unit_vectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3, 64)).astype(np.float32)
    x[:, :, 5] *= 10  # one dimension far larger than the rest, as in MiniLM
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    x[7, 1] = 0  # a missing field
    return x


def test_codes_are_within_half_a_step_and_missing_fields_stay_zero(unit_vectors):
    q = QuantizedVectors.quantize(unit_vectors)
    assert q.codes.dtype == np.int8 and q.shape == unit_vectors.shape and q.nbytes < unit_vectors.nbytes / 3
    back = np.asarray(q)
    assert back.dtype == np.float32
    assert np.all(np.abs(back - unit_vectors) <= q.scale / 2 + 1e-7)
    assert not back[7, 1].any()
    # each dimension has its own step: the large one does not coarsen the others
    assert q.scale[5] > 2 * np.median(q.scale)
    assert np.abs(q.codes).max() == 127


def test_rows_read_like_an_array(unit_vectors):
    q = QuantizedVectors.quantize(unit_vectors)
    back = np.asarray(q)
    np.testing.assert_array_equal(q[4], back[4])
    np.testing.assert_array_equal(q[[3, 1, 3]], back[[3, 1, 3]])
    np.testing.assert_array_equal(q[10:20, 2], back[10:20, 2])
    np.testing.assert_array_equal(q.astype(np.float64), back.astype(np.float64))
    with pytest.raises(InvalidParameter, match="last axis whole"):
        q[0, 0, :3]


def test_quantizing_again_keeps_the_codes(unit_vectors):
    q = QuantizedVectors.quantize(unit_vectors)
    again = QuantizedVectors.quantize(np.asarray(q).astype(np.float16))  # as an update or PostgreSQL reads them back
    np.testing.assert_array_equal(again.codes, q.codes)
    assert store_field_vectors(q, "int8") is q
    with pytest.raises(InvalidParameter, match="float16, int8"):
        store_field_vectors(unit_vectors, "int4")


def test_vectors_must_be_known_and_old_builds_hold_float16():
    with pytest.raises(InvalidParameter, match="vectors must be one of"):
        IndexConfig(vectors="float32")
    saved = IndexConfig(vectors="int8").layout()
    assert IndexConfig.from_saved(saved).vectors == "int8"
    del saved["vectors"]
    assert IndexConfig.from_saved(saved).vectors == "float16"


@pytest.fixture(scope="module")
def float16_index(sample_trials, index_dir):
    """The session's sample trials built with float16 field vectors (the session's embedding cache)."""
    from similarity import build_index

    return build_index(sample_trials, IndexConfig(vectors="float16"), cache_dir=str(index_dir / "cache"))


@pytest.fixture(scope="module")
def int8_index(float16_index, tmp_path_factory):
    """The same index assembled with int8 field vectors, saved and loaded."""
    config = dataclasses.replace(float16_index.config, vectors="int8")
    built = assemble(config, list(float16_index.trials), float16_index.field_vectors)
    path = tmp_path_factory.mktemp("int8")
    build = built.save(path)
    return TrialIndex.load(path), build


def test_an_int8_build_saves_codes_and_serves_memory_mapped(int8_index, float16_index):
    loaded, build = int8_index
    assert np.load(build / "field_vectors.npy", mmap_mode="r").dtype == np.int8 and (build / SCALE_FILE).exists()
    assert json.loads((build / "manifest.json").read_text())["config"]["vectors"] == "int8"
    assert isinstance(loaded.field_vectors, QuantizedVectors) and isinstance(loaded.field_vectors.codes, NpyRows)
    assert (build / "field_vectors.npy").stat().st_size < 0.6 * float16_index.field_vectors.nbytes
    np.testing.assert_allclose(np.asarray(loaded.field_vectors), np.asarray(float16_index.field_vectors, np.float32),
                               atol=float(loaded.field_vectors.scale.max()) / 2 + 1e-3)


def test_the_default_build_stores_int8(index):
    assert index.config.vectors == "int8" and isinstance(index.field_vectors, QuantizedVectors)


def test_an_int8_build_lists_nearly_the_same_trials(int8_index, float16_index):
    loaded, _ = int8_index
    a, b = Ranker(float16_index), Ranker(loaded)
    overlap = []
    for nct_id in (float16_index.nct_id(r) for r in range(20)):
        mine = [t.nct_id for t in a.related(nct_id, 5)]
        theirs = [t.nct_id for t in b.related(nct_id, 5)]
        assert mine[0] == theirs[0] or len(mine) < 2
        overlap.append(len(set(mine) & set(theirs)) / max(len(mine), 1))
    assert np.mean(overlap) >= 0.9


def test_int8_codes_without_their_scale_are_refused(int8_index, tmp_path):
    _, build = int8_index
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    (copy / SCALE_FILE).unlink()
    from similarity.index.quantized import load_field_vectors

    with pytest.raises(IndexMismatch, match="without field_vectors.scale.npy"):
        load_field_vectors(copy)


@pytest.mark.slow
def test_an_update_of_an_int8_index_is_within_one_step_of_a_full_rebuild(int8_index, index_dir):
    from similarity import build_index

    loaded, _ = int8_index
    trials = list(loaded.trials)
    changed = dataclasses.replace(trials[2], brief_title=trials[2].brief_title + " (extension)")
    cache = str(index_dir / "cache")
    updated, report = update_index(loaded, [changed], remove=[trials[0].nct_id], cache_dir=cache)
    assert report.changed == [changed.nct_id] and updated.config.vectors == "int8"
    assert isinstance(updated.field_vectors, QuantizedVectors)
    final = [changed if t.nct_id == changed.nct_id else t for t in trials[1:]]
    full = build_index(final, loaded.config, cache_dir=cache)
    rows = {t.nct_id: i for i, t in enumerate(updated.trials)}
    order = [rows[t.nct_id] for t in full.trials]
    # the update quantises the kept rows again (from their codes), the rebuild from the float vectors
    step = np.maximum(updated.field_vectors.scale, full.field_vectors.scale)
    assert np.all(np.abs(updated.field_vectors[order] - np.asarray(full.field_vectors)) <= 1.5 * step + 1e-6)
    a, b = Ranker(updated), Ranker(full)
    for trial in final[::4]:
        got, want = a.related(trial.nct_id, 5), b.related(trial.nct_id, 5)
        assert len(set(r.nct_id for r in got) & set(r.nct_id for r in want)) >= len(want) - 1


@pytest.mark.slow
def test_build_cli_takes_vectors(tmp_path, data_dir):
    index = tmp_path / "index"
    run = subprocess.run(
        [sys.executable, "-m", "similarity.cli", "build", str(data_dir / "flat-sample.jsonl"), "--index", str(index),
         "--vectors", "int8", "--quiet", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert TrialIndex.load(index).config.vectors == "int8"
    bad = subprocess.run(
        [sys.executable, "-m", "similarity.cli", "build", str(data_dir / "flat-sample.jsonl"), "--index", str(index),
         "--vectors", "int4"],
        capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "--vectors" in bad.stderr and "int4" in bad.stderr
