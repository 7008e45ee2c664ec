"""A real tornado-run master with workers on loopback: serving, loop choice, environment,
forwarded headers, replacement of a killed worker, TTIN/TTOU."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator

import psutil
import pytest
from runner_support import Server, http_get, start_server, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        "hello:application",
        "--workers",
        "2",
        "--loop",
        "uvloop",
        "--proxy-headers",
        log_dir=tmp_path_factory.mktemp("serving"),
    )
    yield running
    running.close()


def test_two_workers_answer_with_distinct_pids(server: Server) -> None:
    workers = server.worker_pids()
    assert len(workers) == 2
    seen: set[int] = set()
    for _ in range(400):
        status, body = server.get_json("/pid")
        assert status == 200
        seen.add(body["pid"])
        if len(seen) == 2:
            break
    assert seen == workers


def test_uvloop_really_runs_the_workers(server: Server) -> None:
    status, body = server.get_json("/loop")
    assert status == 200
    assert body["loop"].startswith("uvloop")


def test_workers_learn_worker_count_cpu_tier_and_graceful_timeout(server: Server) -> None:
    _, env = server.get_json("/env")
    assert env["TORNADO_RUN_WORKER_COUNT"] == "2"
    assert stat.S_ISSOCK(os.stat(env["TORNADO_RUN_CPU_TIER"]).st_mode)  # the tier's socket
    assert "TORNADO_RUN_CPU_SHARE" not in env
    assert float(env["TORNADO_RUN_GRACEFUL_TIMEOUT_SECONDS"]) == 30.0
    assert env["TORNADO_RUN_POOLS_CONFIG"] == "{}"


def test_forwarded_headers_are_honoured_only_from_an_allowed_peer(server: Server) -> None:
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    assert server.port is not None
    trusted = http_get(server.port, "/ip", headers=forged, source="127.0.0.1").json()
    assert trusted == {"remote_ip": "203.0.113.9", "protocol": "https"}
    # 127.0.0.2 is loopback too, but not in the default allow list (127.0.0.1, ::1).
    untrusted = http_get(server.port, "/ip", headers=forged, source="127.0.0.2").json()
    assert untrusted == {"remote_ip": "127.0.0.2", "protocol": "http"}
    # Forwarded values do not leak into the next request on the same connection.
    plain = http_get(server.port, "/ip", source="127.0.0.1").json()
    assert plain["remote_ip"] == "127.0.0.1"


def test_a_killed_worker_is_replaced_and_the_replacement_serves(server: Server) -> None:
    before = server.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> set[int] | None:
        pids = server.worker_pids()
        return pids if len(pids) == 2 and victim not in pids else None

    after = wait_until(replaced, 10, "a replacement worker")
    (newcomer,) = after - before
    server.wait_for_log(rf"worker \d+ \(pid {victim}\) was killed by SIGKILL")
    server.wait_for_log(rf"worker \d+ \(pid {newcomer}\) ready")
    seen: set[int] = set()
    for _ in range(400):
        seen.add(server.get_json("/pid")[1]["pid"])
        if newcomer in seen:
            break
    assert newcomer in seen


def test_ttin_adds_a_worker_and_ttou_removes_one(server: Server) -> None:
    start = server.worker_pids()
    server.send_signal(signal.SIGTTIN)
    grown = wait_until(lambda: _pids_if_count(server, 3), 10, "three workers")
    assert start < grown
    server.wait_for_log(r"TTIN: now 3 worker")
    server.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(server.worker_pids()) == 2, 15, "two workers again")
    server.wait_for_log(r"TTOU: now 2 worker")
    assert server.get_json("/pid")[0] == 200


def test_workers_are_children_of_the_master_in_its_session(server: Server) -> None:
    master = psutil.Process(server.pid)
    for worker in server.workers():
        assert worker.ppid() == master.pid
        assert os.getsid(worker.pid) == os.getsid(master.pid)


def _pids_if_count(server: Server, count: int) -> set[int] | None:
    pids = server.worker_pids()
    return pids if len(pids) == count else None
