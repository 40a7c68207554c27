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
    with server_process(index_dir, env={"RELATED_TRIALS_RELOAD_TOKEN": token}, args=("--watch", "0")) as server:
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
