"""tornado-run as a supervisord [fcgi-program:x]: supervisord owns the socket and is the master;
each process is `tornado-run APP --no-master --bind fd://0`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from supervisor_support import (
    APPS,
    TORNADO_RUN,
    ClientLoop,
    Supervisord,
    free_port,
    http_get,
    running_supervisord,
    try_get,
    wait_for,
)

NAME = "web"
PROCS = (f"{NAME}:{NAME}_00", f"{NAME}:{NAME}_01")


def fcgi_section(workdir: Path, port: int) -> str:
    return (
        f"[fcgi-program:{NAME}]\n"
        f"command={TORNADO_RUN} sup_app:application --app-dir {APPS} --no-master "
        "--bind fd://0 --graceful-timeout 10\n"
        f"socket=tcp://127.0.0.1:{port}\n"
        "numprocs=2\n"
        "process_name=%(program_name)s_%(process_num)02d\n"
        f"directory={workdir}\n"
        "stopsignal=TERM\n"
        "stopwaitsecs=15\n"
        "stopasgroup=true\n"
        "killasgroup=true\n"
        "autorestart=unexpected\n"
        "exitcodes=0\n"
        "startsecs=1\n"
        "startretries=2\n"
        "redirect_stderr=true\n"
        f"stdout_logfile={workdir}/%(program_name)s_%(process_num)02d.log\n"
    )


def running_pids(sup: Supervisord) -> set[int]:
    return {int(sup.wait_state(name, "RUNNING", 30)["pid"]) for name in PROCS}


def answer_while_other_blocks(port: int, mark: Path) -> set[int]:
    """Block one process's loop with a request, then ask again: the other process answers.
    Returns the pids that served the two requests."""
    result: dict[str, Any] = {}

    def blocking() -> None:
        result["blocked"] = http_get(port, f"/block?s=1.5&mark={mark}", timeout=20)

    thread = threading.Thread(target=blocking)
    thread.start()
    wait_for(mark.exists, 10, "the blocking request to start")
    status, body = http_get(port, "/", timeout=10)
    thread.join(timeout=20)
    assert status == 200
    assert result["blocked"][0] == 200
    return {int(body["pid"]), int(result["blocked"][1]["pid"])}


@pytest.mark.timeout(90)
def test_fcgi_processes_share_the_supervisor_socket(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, fcgi_section(tmp_path, port)) as sup:
        pids = running_pids(sup)
        wait_for(lambda: try_get(port), 20, "an answer on the supervisor-owned socket")
        served_by = answer_while_other_blocks(port, tmp_path / "blocked")
        assert served_by == pids, "each of the two processes answers on the one socket"
        for pid in pids:
            sup.remember_tree(pid)
            assert try_get(port) is not None


@pytest.mark.timeout(90)
def test_restarting_one_fcgi_process_keeps_the_service_answering(tmp_path: Path) -> None:
    port = free_port()
    with running_supervisord(tmp_path, fcgi_section(tmp_path, port)) as sup:
        before = running_pids(sup)
        wait_for(lambda: try_get(port), 20, "an answer on the supervisor-owned socket")
        old_first = int(sup.info(PROCS[0])["pid"])
        clients = ClientLoop(port).start()
        try:
            wait_for(lambda: len(clients.pids) >= 5, 10, "the client loop to get answers")
            restarted = sup.ctl("restart", PROCS[0])
            answered = len(clients.pids)
            wait_for(lambda: len(clients.pids) >= answered + 10, 10, "answers after the restart")
        finally:
            clients.stop()
        assert "started" in restarted.stdout, restarted.stdout + restarted.stderr
        assert clients.failures == [], clients.failures[:5]
        after = running_pids(sup)
        assert old_first not in after and len(after & before) == 1
