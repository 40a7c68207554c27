"""TrialIndex.save: one writer at a time, leftovers of killed saves removed, readable builds,
pruning by what CURRENT named (not by name order). The kills themselves are in test_crash.py."""

from __future__ import annotations

import copy
import fcntl
import os
import stat
import threading
import time

import pytest

from similarity.index import TrialIndex


@pytest.fixture
def index(index):
    """A shallow copy of the session's index: ``save`` sets ``path``, which other tests read."""
    return copy.copy(index)


def builds(path):
    return sorted(p.name for p in (path / "builds").iterdir())


def test_build_dirs_are_readable_by_others_as_the_umask_allows(index, tmp_path):
    old = os.umask(0o027)
    try:
        build = index.save(tmp_path / "idx")
    finally:
        os.umask(old)
    assert stat.S_IMODE(build.stat().st_mode) == 0o750
    build = index.save(tmp_path / "idx")
    assert stat.S_IMODE(build.stat().st_mode) == 0o755 & ~old


def test_hidden_leftovers_are_removed_and_the_previous_current_is_kept(index, tmp_path):
    path = tmp_path / "idx"
    first = index.save(path)
    leftover = path / "builds" / ".20000101T000000-killed"
    (leftover / "backend").mkdir(parents=True)
    (leftover / "trials.jsonl").write_text("half")
    second = index.save(path)
    assert builds(path) == sorted([first.name, second.name])
    # A rollback: CURRENT names the older build again. The next save keeps that one (what the
    # server may still be reading), not the newest by name.
    (path / "CURRENT").write_text(first.name)
    third = index.save(path)
    assert builds(path) == sorted([first.name, third.name])
    assert (path / "CURRENT").read_text() == third.name
    assert TrialIndex.load(path).fingerprint == index.fingerprint


def test_a_failed_save_leaves_no_hidden_directory(index, tmp_path, monkeypatch):
    path = tmp_path / "idx"
    index.save(path)

    def full(*_):
        raise OSError("disk full")

    monkeypatch.setattr(index.backend, "save", full)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert not [b for b in builds(path) if b.startswith(".")]


def test_saves_into_one_directory_wait_for_each_other(index, tmp_path):
    path = tmp_path / "idx"
    index.save(path)
    fd = os.open(path / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the directory
    done = threading.Event()
    saver = threading.Thread(target=lambda: (index.save(path), done.set()))
    saver.start()
    time.sleep(0.5)
    assert not done.is_set()
    assert not [b for b in builds(path) if b.startswith(".")]  # it has not started writing
    os.close(fd)
    saver.join(timeout=60)
    assert done.is_set()
    assert len(builds(path)) == 2
