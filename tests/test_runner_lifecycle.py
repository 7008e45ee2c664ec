"""Stopping, dying and booting: graceful TERM with a request in flight, QUIT, a master killed
hard, crash loops, an app that cannot load, pid files."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_support import Response, Server, pid_exited, wait_until


def _in_background(call: Callable[[], Response]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _gone(pids: set[int]) -> bool:
    return all(pid_exited(pid) for pid in pids)


def test_term_drains_in_flight_request_then_exits_0(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    pid_file = tmp_path / "master.pid"
    server = launch("drain_app:application", "--workers", "2", "--pid", str(pid_file))
    assert int(pid_file.read_text()) == server.pid
    workers = server.worker_pids()
    thread, result = _in_background(lambda: server.get("/slow?s=2", timeout=20))
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"TERM: stopping gracefully")
    thread.join(20)
    assert result and isinstance(result[0], Response), result
    assert result[0].status == 200
    assert result[0].headers.get("Connection") == "close"
    assert server.wait(20) == 0
    assert _gone(workers | {server.pid})
    assert not pid_file.exists()
    log = server.log()
    assert log.count("shutdown hook ran") == 2
    assert "stopped (exited with code 0)" in log


def test_ctrl_c_reaching_master_and_workers_drains_in_flight_requests(
    launch: Callable[..., Server],
) -> None:
    # A terminal's Ctrl-C sends INT to the whole process group. Here the worker's INT arrives
    # after the master's TERM, the order that used to look like a "second INT" to the worker.
    server = launch("drain_app:application", "--workers", "1")
    workers = server.worker_pids()
    thread, result = _in_background(lambda: server.get("/slow?s=2", timeout=20))
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGINT)
    server.wait_for_log(r"INT: stopping gracefully")
    for pid in workers:
        os.kill(pid, signal.SIGINT)
    thread.join(20)
    assert result and isinstance(result[0], Response), result
    assert result[0].status == 200
    assert server.wait(20) == 0
    assert _gone(workers)


def test_quit_stops_at_once_without_waiting_for_requests(launch: Callable[..., Server]) -> None:
    server = launch("drain_app:application", "--workers", "1")
    workers = server.worker_pids()
    thread, result = _in_background(lambda: server.get("/slow?s=30", timeout=20))
    server.wait_for_log("slow request started")
    started = time.monotonic()
    server.send_signal(signal.SIGQUIT)
    assert server.wait(10) == 0
    assert time.monotonic() - started < 8  # generous: far below the 30 s request
    thread.join(10)
    assert result and isinstance(result[0], Exception)  # the connection was cut
    assert _gone(workers)


def test_second_int_stops_at_once(launch: Callable[..., Server]) -> None:
    server = launch("drain_app:application", "--workers", "1", "--graceful-timeout", "60")
    thread, _ = _in_background(lambda: server.get("/slow?s=30", timeout=20))
    server.wait_for_log("slow request started")
    server.send_signal(signal.SIGINT)
    server.wait_for_log(r"INT: stopping gracefully")
    assert server.proc.poll() is None  # still draining the 30 s request
    server.send_signal(signal.SIGINT)
    assert server.wait(10) == 0
    thread.join(10)
    assert "second INT: stopping now" in server.log()


def test_workers_die_within_a_second_of_the_master_being_killed(
    launch: Callable[..., Server],
) -> None:
    server = launch("hello:application", "--workers", "2")
    workers = server.worker_pids()
    assert len(workers) == 2
    os.kill(server.pid, signal.SIGKILL)
    server.wait(5)
    wait_until(lambda: _gone(workers), 3, "workers to die after their master")


def test_crash_loop_stops_with_exit_3(launch: Callable[..., Server]) -> None:
    server = launch(
        "factory_app:crashing", "--factory", "--workers", "2", wait_ready=False, timeout=30
    )
    assert server.wait(30) == 3
    log = server.log()
    assert "crash loop" in log
    assert log.count("booting worker") < 12  # bounded: no respawn storm
    assert "Traceback" not in log


def test_app_that_cannot_load_exits_3_with_one_error_line(
    launch: Callable[..., Server],
) -> None:
    server = launch("boom_app:application", "--workers", "2", wait_ready=False)
    assert server.wait(20) == 3
    (line,) = server.log().strip().splitlines()  # no "Listening", no "booting worker"
    assert line.startswith("tornado-run: error: importing module 'boom_app' failed")
    assert "RuntimeError: settings.DATABASE_URL is not set" in line
    assert "boom_app.py:5 in connect" in line


def test_app_raising_configuration_error_exits_2(launch: Callable[..., Server]) -> None:
    server = launch("factory_app:misconfigured", "--factory", "--workers", "2", wait_ready=False)
    assert server.wait(20) == 2
    log = server.log()
    assert log.count("tornado-run: error: [pools.cpu] size = -1 is not allowed") == 1
    assert "Traceback" not in log


@pytest.mark.parametrize("factory", ["make_app", "make_app_async"])
def test_factory_is_called_in_each_worker_after_the_fork(
    launch: Callable[..., Server], factory: str
) -> None:
    server = launch(f"factory_app:{factory}", "--factory", "--workers", "2")
    workers = server.worker_pids()
    for _ in range(50):
        body = server.get_json("/")[1]
        assert body["built_in_pid"] == body["pid"]
        assert body["pid"] in workers
    assert server.stop() == 0


def test_term_half_closes_idle_keep_alive_connections_and_exits_promptly(
    launch: Callable[..., Server],
) -> None:
    server = launch("drain_app:application", "--workers", "1", "--graceful-timeout", "60")
    assert server.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/slow?s=0")
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 200 and reply.getheader("Connection") != "close"
    assert conn.sock is not None
    idle = conn.sock
    started = time.monotonic()
    server.send_signal(signal.SIGTERM)
    idle.settimeout(10)
    assert idle.recv(1) == b""  # FIN from the server: the client knows to reconnect
    conn.close()
    assert server.wait(30) == 0
    assert time.monotonic() - started < 30  # did not sit out the 60 s graceful timeout


@pytest.mark.timeout(60)
def test_a_worker_that_cannot_drain_is_killed_after_the_graceful_timeout(
    launch: Callable[..., Server],
) -> None:
    server = launch("drain_app:application", "--workers", "1", "--graceful-timeout", "1")
    workers = server.worker_pids()
    thread, _ = _in_background(lambda: server.get("/block?s=60", timeout=30))
    server.wait_for_log("blocking request started")
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0  # far below the 60 s the handler would block
    assert "killing them" in server.log()
    assert _gone(workers)
    thread.join(10)


def test_an_app_whose_import_hangs_is_one_error_line_after_the_load_timeout(
    tmp_path: Path,
) -> None:
    from tornado_run.runner.appcheck import check_app_loads
    from tornado_run.runner.errors import AppLoadError
    from tornado_run.runner.settings.loading import load_settings

    (tmp_path / "hanging_app.py").write_text("import time\ntime.sleep(30)\n")
    settings = load_settings("hanging_app:application", {"app_dir": str(tmp_path)}, environ={})
    started = time.monotonic()
    with pytest.raises(AppLoadError, match="took longer than 1 s"):
        check_app_loads(settings, timeout=1.0)
    assert time.monotonic() - started < 10  # the child was killed, not waited for
