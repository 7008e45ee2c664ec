"""Shared fixtures: every test must leave no process behind, and `launch` starts tornado-run
servers that are stopped at teardown.

`no_leftover_processes` (autouse) compares the descendants of the pytest process before and
after each test. New ones still alive after a short grace wait are killed by pid and fail the
test. Exempt: Python's own long-lived helpers (multiprocessing forkserver, resource tracker,
spawn children) and forks of pytest itself (in-process pool workers), which their owners
manage across tests, and new children of processes that predate the test (a module-scoped
server's master replacing a worker).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from runner_support import Server, start_server

GRACE_SECONDS = 3.0
_DASK_TITLES = ("dask worker", "dask nanny")
"""What distributed names its spawn children when setproctitle is installed: a module-scoped
LocalCluster's nanny restarts a worker a test killed, and owns it across tests."""


def _descendants() -> dict[int, psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return {proc.pid: proc for proc in psutil.Process(os.getpid()).children(recursive=True)}
    return {}


def _under(proc: psutil.Process, ancestors: set[int]) -> bool:
    """True if an ancestor of `proc` is in `ancestors` (a process that predates the test and
    owns its children, e.g. a module-scoped server whose master replaced a worker)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return any(parent.pid in ancestors for parent in proc.parents())
    return False


def _tracked(proc: psutil.Process, own_cmdline: list[str]) -> bool:
    try:
        cmdline = proc.cmdline()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    text = " ".join(cmdline)
    return (
        cmdline != own_cmdline
        and "multiprocessing" not in text
        and not text.startswith(_DASK_TITLES)
        and not _pool_of_forkserver(proc)
    )


def _pool_of_forkserver(proc: psutil.Process) -> bool:
    """True below a multiprocessing forkserver: the process pools a test process keeps for
    its later tests (their processes are named by setproctitle, not "multiprocessing")."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        return any("multiprocessing" in " ".join(p.cmdline()) for p in proc.parents())
    return False


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    before = set(_descendants())
    yield
    own = psutil.Process(os.getpid()).cmdline()
    new = [
        proc
        for pid, proc in _descendants().items()
        if pid not in before and not _under(proc, before) and _tracked(proc, own)
    ]
    if not new:
        return
    _, alive = psutil.wait_procs(new, timeout=GRACE_SECONDS)
    alive = [proc for proc in alive if _tracked(proc, own)]
    if not alive:
        return
    described = []
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            proc.kill()
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    pytest.fail(f"test left {len(alive)} process(es) behind (killed): {described}")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`launch(app, *args, **kwargs)` = `runner_support.start_server`, logs under tmp_path;
    every server still running at teardown is stopped (TERM, then kill)."""
    servers: list[Server] = []

    def start(app: str = "hello:application", *args: str, **kwargs: Any) -> Server:
        kwargs.setdefault("log_dir", tmp_path)
        server = start_server(app, *args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
