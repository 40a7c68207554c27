"""Shared fixtures: the real model loaded once per session, a small real index built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def sample_trials():
    """Real trials from every fixture format (legacy zip, API v2, CSV, flat JSONL), deduplicated."""
    from similarity import load_trials

    return load_trials(
        [
            DATA / "legacy-sample.zip",
            DATA / "apiv2-page.json",
            DATA / "csv-sample.csv",
            DATA / "flat-sample.jsonl",
            DATA.parent.parent / "data" / "seed" / "NCT02213705.json",
        ]
    )


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, sample_trials) -> Path:
    """A saved index of the sample trials (built with the real default model)."""
    from similarity import build_index

    path = tmp_path_factory.mktemp("index")
    index = build_index(sample_trials, cache_dir=str(path / "cache"))
    index.save(path)
    return path


@pytest.fixture(scope="session")
def index(index_dir):
    from similarity import TrialIndex

    return TrialIndex.load(index_dir)


@pytest.fixture(scope="session")
def ranker(index):
    from similarity import Ranker

    return Ranker(index)
