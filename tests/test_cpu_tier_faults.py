"""Faults in and around the CPU tier stay contained: a killed web worker, pool process or
broker fails at most the calls it was running, every call ends, the tier is back to its size
with no process or descriptor left over, and a killed master leaves no pool process."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from runner_support import Server, pid_exited
from tier_support import (
    TIER_APPS,
    Background,
    get_json,
    pool_pids,
    tier_tree,
    until,
    wait_for_pool_size,
)


@pytest.fixture
def server(launch: Callable[..., Server]) -> Server:
    server = launch("tier_app:application", "--workers", "2", app_dir=TIER_APPS)
    seen = set()
    for _ in range(60):  # until both workers have connected to the tier
        code, body = get_json(server, "/burn?ms=1")
        assert code == 200, body
        seen.add(body["worker"])
        if len(seen) == 2:
            break
    return server


def read_mark(path: Path) -> int:
    return int(until(lambda: path.exists() and path.read_text(), f"{path.name} written"))


def settled_fds(broker: psutil.Process) -> int:
    """The broker's open descriptors once they stop changing."""
    counts: list[int] = []

    def steady() -> bool:
        counts.append(broker.num_fds())
        return len(counts) >= 5 and len(set(counts[-5:])) == 1

    until(steady, "the broker's descriptors to settle")
    return counts[-1]


@pytest.mark.timeout(90)
def test_a_killed_pool_process_fails_only_its_call_and_is_replaced(
    server: Server, tmp_path: Path
) -> None:
    size = len(wait_for_pool_size(server, len(pool_pids(server))))
    broker = server.tier()[0]
    fds_before = settled_fds(broker)
    requests = Background(server)
    marks = [tmp_path / f"call{i}" for i in range(size)]
    for mark in marks:
        requests.start(f"/nap?s=2&mark={mark}")
    victims = [read_mark(mark) for mark in marks]
    queued = requests.start("/nap?s=0.1")  # waits for a process: must not die with one
    psutil.Process(victims[0]).kill()
    results = requests.join(30)
    assert results[0][0] == 500, results[0]
    server.wait_for_log(r"500 GET .*died with signal SIGKILL")
    assert all(results[i][0] == 200 for i in range(1, size)), results
    assert results[queued][0] == 200, results[queued]
    replaced = wait_for_pool_size(server, size)
    assert victims[0] not in replaced and set(victims[1:]) <= replaced
    assert get_json(server, "/burn?ms=1")[0] == 200
    assert settled_fds(broker) == fds_before
    assert broker.num_threads() == 1  # the broker is one loop: no thread to leak


@pytest.mark.timeout(90)
def test_a_timeout_answers_504_before_the_call_ends_and_kills_its_process(
    server: Server, tmp_path: Path
) -> None:
    mark = tmp_path / "slow"
    started = time.monotonic()
    requests = Background(server)
    requests.start(f"/nap?pool=quick&s=20&mark={mark}")
    pid = read_mark(mark)
    (code, body), *_ = requests.join(15).values()
    assert code == 504, body
    assert time.monotonic() - started < 15  # answered at the deadline, not after 20 s
    until(lambda: pid_exited(pid), "kill")
    assert pid not in wait_for_pool_size(server, 2, "quick")


@pytest.mark.timeout(90)
def test_a_client_that_hangs_up_has_its_running_call_killed_with_cancel_running(
    server: Server, tmp_path: Path
) -> None:
    mark = tmp_path / "hangup"
    assert server.port is not None
    client = socket.create_connection(("127.0.0.1", server.port))
    client.sendall(f"GET /nap?pool=polite&s=30&mark={mark} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    pid = read_mark(mark)
    client.close()
    until(lambda: pid_exited(pid), "kill")
    assert pid not in wait_for_pool_size(server, 1, "polite")


@pytest.mark.timeout(90)
def test_a_killed_web_worker_leaves_the_tier_serving_the_others(
    server: Server, tmp_path: Path
) -> None:
    broker = server.tier()[0]
    size = len(pool_pids(server))
    fds_before = settled_fds(broker)
    mark = tmp_path / "orphan"
    requests = Background(server)
    requests.start(f"/nap?s=1&mark={mark}")
    pool_pid = read_mark(mark)
    worker = int((tmp_path / "orphan.worker").read_text())
    psutil.Process(worker).kill()
    for _ in range(10):
        code, body = get_json(server, "/burn?ms=1")
        assert code == 200, body
    requests.join(30)  # its client saw the connection drop; nothing hangs
    assert server.tier() == [broker]
    assert pool_pid in wait_for_pool_size(server, size)  # its call ran on; result dropped
    until(lambda: len(server.workers()) == 2, "the master to replace the worker")
    replacement = ({p.pid for p in server.workers()} - {worker}).pop()
    for _ in range(60):  # until the new worker has connected to the tier too
        if get_json(server, "/burn?ms=1")[1]["worker"] == replacement:
            break
    assert settled_fds(broker) == fds_before  # the dead worker's link is gone


@pytest.mark.timeout(90)
def test_a_killed_broker_fails_its_calls_in_flight_and_a_new_one_serves(
    server: Server, tmp_path: Path
) -> None:
    broker = server.tier()[0]
    old_tree = tier_tree(server)
    mark = tmp_path / "inflight"
    requests = Background(server)
    requests.start(f"/nap?s=20&mark={mark}")
    read_mark(mark)
    broker.kill()
    (code, body), *_ = requests.join(15).values()
    assert code == 500, body
    server.wait_for_log(r"500 GET .*the cpu tier went away")
    until(lambda: not any(p.is_running() and p.status() != "zombie" for p in old_tree), "reap")
    assert get_json(server, "/burn?ms=1")[0] == 200  # reconnects to the new broker
    assert server.tier()[0].pid != broker.pid
    server.wait_for_log(r"the cpu tier \(pid \d+\) was killed by SIGKILL; starting a new one")


@pytest.mark.timeout(60)
def test_sigkill_of_the_master_leaves_no_tier_process(server: Server, tmp_path: Path) -> None:
    mark = tmp_path / "busy"
    requests = Background(server)
    requests.start(f"/nap?s=30&mark={mark}")
    read_mark(mark)
    tree = tier_tree(server)
    assert len(tree) >= 3  # broker, zygote, pool processes
    server.proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    server.kill()
    requests.join(30)


@pytest.mark.timeout(90)
def test_a_broker_that_keeps_dying_at_start_is_a_crash_loop_exit_3(server: Server) -> None:
    killed: set[int] = set()

    def kill_the_broker() -> bool:
        for broker in server.tier():
            if broker.pid not in killed:
                killed.add(broker.pid)
                broker.kill()
        return server.proc.poll() is not None

    until(kill_the_broker, "the master to give up on the tier", timeout=60)
    assert server.wait(10) == 3
    assert "crash loop: the cpu tier died 5 times" in server.log()
    assert len(killed) >= 5
