"""Atomic index writes: a build killed with SIGKILL at any point leaves the previous index in use.

Index A is built into DIR with the CLI, and its related lists are recorded. Then builds of other
sources (B) into the same DIR are killed: at fixed times after they start (in imports, loading,
embedding), once the moment a hidden build directory appears under ``DIR/builds`` (the save, its
fsyncs slowed so that the kill lands inside it), and at each step of ``TrialIndex.save`` by a build
that kills itself there. After every kill, DIR still loads A (same fingerprint, same related
lists) and ``CURRENT`` never names a hidden, half-written directory. A kill after ``CURRENT`` has
switched leaves the new index, complete. A later successful build works over the leftovers.

Run with ``-s`` to see the table of kill points and outcomes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from similarity.cli import main
from similarity.index import TrialIndex

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
SOURCES_A = [DATA / "flat-sample.jsonl", DATA / "legacy-sample.zip"]
SOURCES_B = [
    DATA / "csv-sample.csv",
    DATA / "apiv2-page.json",
    DATA / "apiv2-array.json",
    DATA / "apiv2-studies.jsonl",
]
QUERIES_A = ["NCT00004154", "NCT00000102", "NCT00492258"]
QUERIES_B = ["NCT06954688", "NCT00001163"]

# Runs the real CLI in a subprocess and notes each phase it enters in $CRASH_MARKS, so that a kill
# can be placed (and reported) by phase. $CRASH_SLOW_FSYNC stretches the save by sleeping in fsync.
CLI_WRAPPER = r"""
import os, sys, time
marks = open(os.environ["CRASH_MARKS"], "a", buffering=1)
def mark(name):
    marks.write(f"{time.monotonic():.3f} {name}\n")
import similarity.index as index, similarity.ingest as loaders
from similarity.cli import main
mark("imports done")
def hook(module, name, phase):
    original = getattr(module, name)
    def wrapped(*args, **kwargs):
        mark(phase)
        return original(*args, **kwargs)
    setattr(module, name, wrapped)
hook(loaders, "load_trials", "loading sources")
hook(index, "build_index", "embedding")
hook(index.TrialIndex, "save", "saving: writing files")
slow, fsync, replace = float(os.environ.get("CRASH_SLOW_FSYNC", "0")), os.fsync, os.replace
def slow_fsync(fd):
    mark("saving: fsync")
    time.sleep(slow)
    fsync(fd)
def marked_replace(src, dst):
    mark("saving: switching CURRENT" if str(dst).endswith("CURRENT") else "saving: renaming build dir")
    replace(src, dst)
os.fsync, os.replace = slow_fsync, marked_replace
code = main(sys.argv[1:])
mark("done")
sys.exit(code)
"""

# Saves an existing index (argv[1]) into DIR (argv[2]), killing itself with SIGKILL at a step of
# TrialIndex.save (argv[3]): a deterministic kill inside the save, without a model in the process.
SAVE_KILLER = r"""
import os, signal, sys, tempfile
import numpy as np
from similarity.index import TrialIndex
source, target, point = sys.argv[1:]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
mkdtemp, save, fsync, replace = tempfile.mkdtemp, np.save, os.fsync, os.replace
def after_mkdtemp(*a, **k):
    path = mkdtemp(*a, **k)
    if point == "hidden dir created": die()
    return path
def before_np_save(*a, **k):
    if point == "half written": die()
    return save(*a, **k)
def before_fsync(fd):
    if point == "written, before fsync": die()
    return fsync(fd)
def around_replace(src, dst):
    if str(dst).endswith("CURRENT"):
        if point == "pointer written, before switch": die()
        replace(src, dst)
        if point == "switched, before cleanup": die()
    else:
        replace(src, dst)
        if point == "renamed, before switch": die()
tempfile.mkdtemp, np.save, os.fsync, os.replace = after_mkdtemp, before_np_save, before_fsync, around_replace
TrialIndex.load(source).save(target)
"""
SAVE_POINTS = [
    "hidden dir created",
    "half written",
    "written, before fsync",
    "renamed, before switch",
    "pointer written, before switch",
]
COMMIT_POINT = "switched, before cleanup"


@dataclasses.dataclass
class Kill:
    """One killed build and what DIR held afterwards."""

    point: str
    phase: str  # what the build was doing when it died
    exit: int | None
    current: str
    fingerprint: str | None
    related_same: bool
    hidden: list[str]  # hidden (half-written) build directories left behind
    orphans: list[str]  # complete build directories that CURRENT does not name


def related(path: Path, nct_id: str) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["related", nct_id, "--index", str(path), "--json", "-k", "5"]) == 0
    return json.loads(out.getvalue())


def builds(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "builds").iterdir())


def cli(
    index: Path, sources, *options: str, marks: Path, slow_fsync: float = 0.0
) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CRASH_MARKS": str(marks),
        "CRASH_SLOW_FSYNC": str(slow_fsync),
    }
    argv = ["build", *map(str, sources), "--index", str(index), "-q", *options]
    return subprocess.Popen(
        [sys.executable, "-c", CLI_WRAPPER, *argv], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def last_phase(marks: Path) -> str:
    lines = marks.read_text().splitlines() if marks.exists() else []
    return lines[-1].split(" ", 1)[1] if lines else "starting (imports)"


@dataclasses.dataclass
class Scenario:
    path: Path
    a: TrialIndex
    b: TrialIndex
    related_a: dict[str, list[dict]]
    kills: list[Kill]
    after_commit: Kill
    final: Kill  # the later build that runs to the end (not killed)
    final_output: str


def record(
    path: Path, point: str, phase: str, code: int | None, lists: dict[str, list[dict]]
) -> Kill:
    current = (path / "CURRENT").read_text().strip()
    loaded = TrialIndex.load(path)
    assert loaded.path is not None and loaded.path.name == current
    return Kill(
        point=point,
        phase=phase,
        exit=code,
        current=current,
        fingerprint=loaded.fingerprint,
        related_same=all(related(path, q) == want for q, want in lists.items()),
        hidden=[b for b in builds(path) if b.startswith(".")],
        orphans=[b for b in builds(path) if not b.startswith(".") and b != current],
    )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    root = tmp_path_factory.mktemp("crash")
    path, scratch, marks = root / "index", root / "scratch", root / "marks"

    # Index A, the one every kill must leave in place; index B, built whole elsewhere.
    for target, sources in ((path, SOURCES_A), (scratch, SOURCES_B)):
        proc = cli(target, sources, marks=marks)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = TrialIndex.load(path), TrialIndex.load(scratch)
    assert a.fingerprint != b.fingerprint
    related_a = {q: related(path, q) for q in QUERIES_A}
    related_b = {q: related(scratch, q) for q in QUERIES_B}
    kills = []

    # Builds of B into DIR killed at fixed times; the last with the (SQLite) embedding cache on.
    for delay, options in (
        (0.3, ["--no-cache"]),
        (1.0, ["--no-cache"]),
        (2.0, ["--no-cache"]),
        (4.0, []),
    ):
        marks.unlink(missing_ok=True)
        proc = cli(path, SOURCES_B, *options, marks=marks)
        time.sleep(delay)
        phase = last_phase(marks)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, (
            f"the build ended before the kill at {delay} s: {err}"
        )
        cache = "" if options else ", cache on"
        kills.append(record(path, f"after {delay} s{cache}", phase, proc.returncode, related_a))

    # A build killed the moment its hidden build directory appears (its fsyncs slowed to 0.2 s).
    marks.unlink(missing_ok=True)
    before = set(builds(path))
    proc = cli(path, SOURCES_B, "--no-cache", marks=marks, slow_fsync=0.2)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if any(b.startswith(".") for b in set(builds(path)) - before):
            time.sleep(0.3)  # into the save, a few files written
            break
        time.sleep(0.005)
    phase = last_phase(marks)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the build ended before the kill: {err}"
    kills.append(
        record(path, "on a new hidden dir under builds/", phase, proc.returncode, related_a)
    )

    # A save of B into DIR that kills itself at each step of TrialIndex.save.
    def save_killed_at(point: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", SAVE_KILLER, str(scratch), str(path), point],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stderr
        return done.returncode

    for point in SAVE_POINTS:
        code = save_killed_at(point)
        kills.append(record(path, f"in save: {point}", point, code, related_a))
    code = save_killed_at(COMMIT_POINT)
    after_commit = record(path, f"in save: {COMMIT_POINT}", COMMIT_POINT, code, related_b)

    # A later build of A that runs to the end, over everything the kills left behind.
    marks.unlink(missing_ok=True)
    proc = cli(path, SOURCES_A, marks=marks)
    out, err = proc.communicate(timeout=300)
    final = record(path, "none: a later build of A", "ran to the end", proc.returncode, related_a)
    scenario = Scenario(path, a, b, related_a, kills, after_commit, final, out + err)
    print("\n" + table(scenario))
    return scenario


def table(s: Scenario) -> str:
    rows = [
        "| kill point | build was | CURRENT afterwards | loads | same related lists "
        "| hidden dirs left | orphan builds |",
        "|---|---|---|---|---|---:|---:|",
    ]
    names = {s.a.fingerprint: "A (previous)", s.b.fingerprint: "B (new)"}
    for k in [*s.kills, s.after_commit, s.final]:
        which = f"A (a new build; exit {k.exit})" if k is s.final else names.get(k.fingerprint, "?")
        rows.append(
            f"| {k.point} | {k.phase} | {which} | yes | {'yes' if k.related_same else 'NO'} "
            f"| {len(k.hidden)} | {len(k.orphans)} |"
        )
    return "\n".join(rows)


def test_every_kill_before_the_switch_leaves_the_previous_index(scenario):
    assert len(scenario.kills) == 4 + 1 + len(SAVE_POINTS)
    for kill in scenario.kills:
        assert kill.exit == -signal.SIGKILL
        assert kill.current == scenario.a.path.name, kill.point
        assert kill.fingerprint == scenario.a.fingerprint, kill.point
        assert kill.related_same, kill.point


def test_the_kills_land_inside_the_save(scenario):
    phases = [k.phase for k in scenario.kills]
    assert phases[4].startswith("saving: "), phases  # the kill on a new hidden directory
    assert phases[5:] == SAVE_POINTS


def test_a_half_written_directory_is_never_picked_up(scenario):
    for kill in [*scenario.kills, scenario.after_commit]:
        assert not kill.current.startswith("."), kill.point
    # The kills inside the save did leave half-written hidden directories: they were there to pick.
    assert any(kill.hidden for kill in scenario.kills)


def test_a_kill_after_the_switch_leaves_the_new_index_complete(scenario):
    kill = scenario.after_commit
    assert kill.current != scenario.a.path.name and not kill.current.startswith(".")
    assert kill.fingerprint == scenario.b.fingerprint
    assert kill.related_same


def test_a_later_build_succeeds_over_the_leftovers(scenario):
    final = scenario.final
    assert final.exit == 0, scenario.final_output
    assert final.fingerprint == scenario.a.fingerprint  # the same sources as A again
    assert final.current not in {k.current for k in [*scenario.kills, scenario.after_commit]}
    assert final.related_same
    assert not (scenario.path / ".CURRENT.tmp").exists()


def test_a_later_build_removes_half_written_leftovers(scenario):
    assert not scenario.final.hidden
    # It keeps itself and the build CURRENT named before it, no older one.
    assert len(scenario.final.orphans) == 1
