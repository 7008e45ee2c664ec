"""tornado-run as a supervisord [program:x]: supervisord runs the master, the master its workers."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from supervisor_support import (
    ClientLoop,
    Supervisord,
    free_port,
    http_get,
    is_gone,
    program_section,
    running_supervisord,
    tornado_run_command,
    try_get,
    wait_for,
)

NAME = "web"


def web_section(workdir: Path, port: int, workers: int = 2) -> str:
    command = tornado_run_command(
        "sup_app:application",
        f"--workers {workers}",
        f"--bind 127.0.0.1:{port}",
        "--graceful-timeout 10",
    )
    return program_section(NAME, command, workdir, startsecs=1, stopwaitsecs=15)


def worker_pids(master: int, count: int) -> set[int]:
    """Wait until the master has `count` children and return their pids."""

    def children() -> set[int] | None:
        pids = {p.pid for p in psutil.Process(master).children() if not is_gone(p)}
        return pids if len(pids) == count else None

    result: set[int] = wait_for(children, 20, f"{count} workers of master {master}")
    return result


def serving(sup: Supervisord, port: int) -> int:
    """Wait until the program is RUNNING and answering; return the master's pid."""
    info = sup.wait_state(NAME, "RUNNING", 30)
    wait_for(lambda: try_get(port), 20, f"an answer on port {port}")
    master = int(info["pid"])
    sup.remember_tree(master)
    return master


def stop_during(sup: Supervisord, port: int, path: str, mark: Path) -> tuple[Any, list[Any]]:
    """Start GET `path` (which touches `mark` once in flight), snapshot the program's process
    tree, `supervisorctl stop` it; return (the answer or the client's error, the tree)."""
    result: dict[str, Any] = {}

    def request() -> None:
        try:
            result["answer"] = http_get(port, f"{path}&mark={mark}", timeout=30)
        except OSError as exc:
            result["answer"] = exc

    client = threading.Thread(target=request)
    client.start()
    wait_for(mark.exists, 20, "the request to be in flight")
    group = sup.remember_tree(int(sup.info(NAME)["pid"]))
    stopped = sup.ctl("stop", NAME)
    client.join(timeout=35)
    assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    return result.get("answer"), group


def test_program_mode_runs_and_serves(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, web_section(tmp_path, port)) as sup:
        master = serving(sup, port)
        workers = worker_pids(master, 2)
        body = try_get(port)
        assert body is not None and body["pid"] in workers
        assert body["ppid"] == master
        assert "RUNNING" in sup.ctl("status", NAME).stdout


@pytest.mark.timeout(90)
def test_stop_drains_in_flight_request_and_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, web_section(tmp_path, port)) as sup:
        master = serving(sup, port)
        worker_pids(master, 2)
        mark = tmp_path / "in-flight"
        answer, group = stop_during(sup, port, "/slow?s=2", mark)

        assert answer == (200, {"pid": int(mark.read_text()), "slept": 2.0})
        info = sup.info(NAME)
        assert info["statename"] == "STOPPED"
        assert info["exitstatus"] == 0, "a TERM stop is a clean exit"
        alive = [p.pid for p in group if not is_gone(p)]
        assert not alive, f"processes of the group still running: {alive}"


@pytest.mark.timeout(90)
def test_signal_hup_reloads_workers_without_failed_requests(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, web_section(tmp_path, port)) as sup:
        master = serving(sup, port)
        old = worker_pids(master, 2)
        clients = ClientLoop(port).start()
        wait_for(lambda: len(clients.pids) >= 5, 10, "the client loop to get answers")
        signalled = sup.ctl("signal", "HUP", NAME)

        def replaced() -> bool:
            sup.remember_tree(master)
            current = {p.pid for p in psutil.Process(master).children() if not is_gone(p)}
            return len(current) == 2 and not current & old

        try:
            wait_for(replaced, 40, "every old worker to be replaced")
            new = worker_pids(master, 2)
            wait_for(lambda: set(clients.pids[-20:]) & new, 10, "answers from new workers")
        finally:
            clients.stop()

        assert "signalled" in signalled.stdout, signalled.stdout + signalled.stderr
        assert clients.failures == [], clients.failures[:5]
        assert sup.info(NAME)["pid"] == master, "HUP must not restart the master"
        assert set(clients.pids) & old and set(clients.pids) & new


@pytest.mark.timeout(90)
def test_supervisord_restarts_a_killed_master_and_old_workers_die(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, web_section(tmp_path, port)) as sup:
        master = serving(sup, port)
        old_workers = [psutil.Process(pid) for pid in worker_pids(master, 2)]
        sup.remember_tree(master)

        os.kill(master, signal.SIGKILL)

        wait_for(
            lambda: all(is_gone(p) for p in old_workers), 10, "the old master's workers to exit"
        )
        info = sup.wait_state(NAME, "RUNNING", 40)
        new_master = int(info["pid"])
        assert new_master != master
        body = wait_for(lambda: try_get(port), 20, "the restarted master to serve")
        assert psutil.Process(body["pid"]).ppid() == new_master
        assert "terminated by SIGKILL" in sup.log_text()


@pytest.mark.timeout(90)
def test_stop_lets_in_flight_process_pool_work_finish(tmp_path: Path) -> None:
    port = free_port()
    command = tornado_run_command(
        "pool_app:application", "--workers 1", f"--bind 127.0.0.1:{port}", "--graceful-timeout 10"
    )
    section = program_section(NAME, command, tmp_path, startsecs=1, stopwaitsecs=15)
    with running_supervisord(tmp_path, section) as sup:
        sup.wait_state(NAME, "RUNNING", 30)
        wait_for(lambda: try_get(port, "/crunch?s=0"), 30, "the pool app to serve")
        answer, group = stop_during(sup, port, "/crunch?s=2", tmp_path / "in-flight")

        assert len(group) >= 3, "master, worker and at least one pool process"
        assert isinstance(answer, tuple) and answer[0] == 200, answer
        assert answer[1]["pool_pid"] in {p.pid for p in group}
        assert sup.info(NAME)["exitstatus"] == 0
        assert [p.pid for p in group if not is_gone(p)] == []


@pytest.mark.timeout(60)
def test_stopwaitsecs_shorter_than_the_drain_kills_the_whole_group(tmp_path: Path) -> None:
    """Why stopwaitsecs must exceed the graceful timeout: supervisord SIGKILLs mid-drain (and
    killasgroup makes sure that kill reaches every worker)."""
    port = free_port()
    command = tornado_run_command(
        "sup_app:application", "--workers 2", f"--bind 127.0.0.1:{port}", "--graceful-timeout 10"
    )
    section = program_section(NAME, command, tmp_path, startsecs=1, stopwaitsecs=1)
    with running_supervisord(tmp_path, section) as sup:
        serving(sup, port)
        answer, group = stop_during(sup, port, "/slow?s=4", tmp_path / "in-flight")

        assert isinstance(answer, OSError), f"a request cut by SIGKILL cannot succeed: {answer}"
        assert sup.info(NAME)["exitstatus"] == -1, "killed by a signal"
        assert [p.pid for p in group if not is_gone(p)] == []
        assert "killing 'web'" in sup.log_text() and "SIGKILL" in sup.log_text()
