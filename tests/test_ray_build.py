"""The Ray Data build engine against a real local Ray cluster (2 CPUs): the same index as a local build.

One cluster per module: the ``engine`` fixture starts it (and checks it is shut down after). The CLI
test runs in the same process, so its engine uses that session instead of starting another.
"""

from __future__ import annotations

import numpy as np
import pytest

from similarity import LoadReport, Ranker, TrialIndex, load_trials
from similarity.cli import main
from similarity.exceptions import InvalidParameter, InvalidRecord

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install -e '.[scale]'")

pytestmark = pytest.mark.slow


def _sources(data_dir):
    return [data_dir / "legacy-sample.zip", data_dir / "apiv2-page.json", data_dir / "csv-sample.csv",
            data_dir / "flat-sample.jsonl", data_dir.parent.parent / "data" / "seed" / "NCT02213705.json"]


@pytest.fixture(scope="module")
def engine():
    from similarity.index.ray_build import RayEngine

    assert not ray.is_initialized()
    # Three zip members per part: the fixture zip becomes several parts read by separate tasks.
    with RayEngine(workers=2, batch_size=8, members_per_part=3) as started:
        assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
        yield started
    assert not ray.is_initialized(), "the engine shuts down the cluster it started"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_reading_on_the_cluster_gives_what_load_trials_gives(engine, data_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nct_id": "NCT00000102", "brief_title": "ok"}\n{"brief_title": "no id"}\n{not json\n')
    sources = _sources(data_dir) + [bad]
    local_report, ray_report = LoadReport(), LoadReport()
    local = load_trials(sources, report=local_report)
    on_ray = engine.load_trials(sources, report=ray_report)
    assert [t.nct_id for t in on_ray] == [t.nct_id for t in local]
    assert on_ray == local  # every field; a later duplicate replaced the earlier in its position
    assert ray_report.summary() == local_report.summary() == "47 trials loaded, 2 records skipped, 8 duplicate NCT IDs"
    assert [str(e) for e in ray_report.errors] == [str(e) for e in local_report.errors]
    assert ray_report.duplicates == local_report.duplicates
    with pytest.raises(InvalidRecord, match="bad.jsonl, line 2"):
        engine.load_trials([bad], strict=True)


def test_a_ray_build_is_the_local_build(engine, sample_trials, index, tmp_path):
    built = engine.build_index(sample_trials, cache_dir=str(tmp_path / "cache"))  # cold cache
    assert [t.nct_id for t in built.trials] == [t.nct_id for t in index.trials]
    assert built.manifest.fingerprint == index.manifest.fingerprint
    assert built.manifest.config == index.manifest.config
    assert built.manifest.engine["name"] == "ray" and built.manifest.engine["workers"] == 2
    # Measured: max difference 6.1e-05 (one float16 step) in 95 of the 90,240 values (0.1%): another
    # batch's padding moves a float32 value by ~1e-7, and float16 rounding now and then lands a step apart.
    difference = np.abs(built.field_vectors.astype(np.float32) - np.asarray(index.field_vectors, np.float32))
    assert difference.max() <= 2e-3, difference.max()
    assert np.mean(difference > 0) < 0.01
    ours, theirs = Ranker(built), Ranker(index)
    overlaps = []
    for trial in index.trials:
        a = {r.nct_id for r in ours.related(trial.nct_id, k=10)}
        b = {r.nct_id for r in theirs.related(trial.nct_id, k=10)}
        overlaps.append(len(a & b) / len(b))
    # Measured: 1.0 (every list the same) over the 47 fixture trials.
    assert np.mean(overlaps) >= 0.95, np.mean(overlaps)


def test_the_cli_builds_with_the_ray_engine(engine, capsys, data_dir, tmp_path):
    code, out, err = run(capsys, "build", *_sources(data_dir), "--index", tmp_path / "idx", "--engine", "ray",
                         "--ray-workers", "2", "--cache-dir", tmp_path / "cache", "-q")
    assert code == 0, err
    assert "47 trials loaded, 0 records skipped, 7 duplicate NCT IDs" in out and "Ray, 2 workers" in out
    index = TrialIndex.load(tmp_path / "idx")
    assert len(index) == 47 and index.manifest.engine["name"] == "ray"
    assert index.related_lists is not None  # the stored lists, as after a local build
    code, out, err = run(capsys, "related", "NCT02213705", "--index", tmp_path / "idx", "-k", "3", "--json")
    assert code == 0 and out.count('"nct_id"') == 3, err
    assert ray.is_initialized(), "a Ray session the process already had is left running"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray-workers", "2"], "--ray-workers need --engine ray"),
        (["--ray-address", "auto"], "--ray-address need --engine ray"),
        (["--engine", "ray", "--ray-workers", "0"], "Ray workers must be an integer >= 1, got 0"),
        (["--engine", "ray", "--ray-address", "http://x"], "Ray address must be 'auto', 'host:port' or 'ray://host:port'"),
        (["--engine", "ray", "--ray-workers", "3"], "at most the cluster's 2 CPUs"),
        (["--engine", "ray", "--ray-address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    ],
)
def test_bad_ray_parameters_are_one_line_errors(engine, capsys, data_dir, tmp_path, flags, message):
    code, out, err = run(capsys, "build", data_dir / "flat-sample.jsonl", "--index", tmp_path / "idx", "-q", *flags)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "idx").exists()
    assert ray.is_initialized(), "an error leaves the process's Ray session as it was"


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch, capsys, data_dir, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` raises ImportError
    code, out, err = run(capsys, "build", data_dir / "flat-sample.jsonl", "--index", tmp_path / "idx", "-q",
                         "--engine", "ray")
    assert code == 1 and "pip install -e '.[scale]'" in err and len(err.strip().splitlines()) == 1, err


def test_bad_engine_arguments_raise_before_any_cluster_starts():
    from similarity.index.ray_build import RayEngine

    for kwargs in ({"workers": -1}, {"batch_size": 0}, {"workers": True}, {"address": "ray://"}):
        with pytest.raises(InvalidParameter):
            RayEngine(**kwargs)


def test_build_index_ray_reads_and_builds_in_one_call(engine, data_dir, tmp_path):
    from similarity import build_index, build_index_ray

    source = data_dir / "flat-sample.jsonl"
    report = LoadReport()
    built = build_index_ray([source], workers=2, cache_dir=str(tmp_path / "ray"), report=report)
    local = build_index(load_trials([source]), cache_dir=str(tmp_path / "local"))
    assert report.loaded == len(built) == len(local)
    assert [t.nct_id for t in built.trials] == [t.nct_id for t in local.trials]
    assert np.abs(built.field_vectors.astype(np.float32) - local.field_vectors.astype(np.float32)).max() <= 2e-3
    assert ray.is_initialized()
