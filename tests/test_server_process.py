"""``server_process``: ``related-trials serve`` in a child process, as the load test, the soak test
and the screenshot script start it."""

from __future__ import annotations

import httpx
import pytest

from similarity.service import RunningServer, server_process

pytestmark = pytest.mark.slow

SEED = "NCT02213705"


def test_serves_the_index_and_stops_after_the_block(index_dir):
    with server_process(index_dir) as server:
        assert isinstance(server, RunningServer)
        assert server.url.startswith("http://127.0.0.1:")
        assert server.pid == server.process.pid
        assert server.process.poll() is None
        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["index"]["count"] > 0
        related = httpx.get(f"{server.url}/trials/{SEED}/related", params={"k": 3}, timeout=60)
        assert related.status_code == 200
        assert len(related.json()["related"]) == 3
    assert server.process.poll() is not None  # reaped: gone, not a zombie
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_passes_its_environment_to_the_server(index_dir):
    token = "a-test-token-of-some-length"
    with server_process(index_dir, env={"RELATED_TRIALS_RELOAD_TOKEN": token}, args=("--watch", "0", "--workers", "1")) as server:
        denied = httpx.post(f"{server.url}/admin/reload", timeout=60)
        allowed = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {token}"}, timeout=120)
    assert denied.status_code in (401, 403)
    assert allowed.status_code == 200


def test_a_directory_without_an_index_is_a_runtime_error_quoting_the_server(tmp_path):
    with pytest.raises(RuntimeError, match="no index in") as caught:
        with server_process(tmp_path, startup_timeout=120):
            pytest.fail("the block must not run")
    assert "exited with status" in str(caught.value)


def test_serve_options_reach_the_command_line(index_dir):
    with pytest.raises(RuntimeError, match="--watch must be >= 0"):
        with server_process(index_dir, args=("--watch", "-1")):
            pytest.fail("the block must not run")


def test_startup_timeout_must_be_positive(index_dir):
    from similarity import InvalidParameter

    with pytest.raises(InvalidParameter, match="startup_timeout"):
        with server_process(index_dir, startup_timeout=0):
            pass


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_workers_all_follow_a_new_build_and_restart_on_sighup(index_dir, tmp_path):
    import shutil
    import signal
    import time

    from similarity import TrialIndex

    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    with server_process(copy, args=("--workers", "2", "--watch", "0.5")) as server:
        deadline = time.monotonic() + 120
        while len(_children(server.pid)) < 2:  # the multiprocessing helper may add one more
            assert time.monotonic() < deadline, "the server did not start 2 workers"
            time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            first = {http.get("/health").json()["index"]["build"] for _ in range(20)}
            assert len(first) == 1
            new = TrialIndex.load(copy, mmap=False).save(copy).name
            deadline = time.monotonic() + 60
            while {http.get("/health").json()["index"]["build"] for _ in range(20)} != {new}:
                assert time.monotonic() < deadline, "a worker kept the old build"
                time.sleep(0.5)
            workers = set(_children(server.pid))
            server.process.send_signal(signal.SIGHUP)  # the parent restarts every worker
            deadline = time.monotonic() + 120
            while len(set(_children(server.pid)) - workers) < 2:  # two new workers (a helper may stay)
                assert time.monotonic() < deadline, "SIGHUP did not restart the workers"
                time.sleep(0.5)
            assert {http.get("/health").json()["index"]["build"] for _ in range(10)} == {new}
            assert http.get(f"/trials/{SEED}/related", params={"k": 2}).status_code == 200
        assert server.process.poll() is None


def test_several_workers_need_a_watch_interval(index_dir):
    with pytest.raises(RuntimeError, match="--watch 0 needs --workers 1"):
        with server_process(index_dir, args=("--workers", "2", "--watch", "0"), startup_timeout=60):
            pytest.fail("the block must not run")
