"""The dask pool across test hosts: a `dask scheduler` and two `dask worker`s, each in its own
network namespace on a private bridge (10.213.x.0/24), and `tornado-run` serving
tests/apps/remote_app.py from the root namespace. The dask hosts have the app's folder on
their PYTHONPATH and no pool declared; only tornado-run's config file declares "remote".

Faults and what a user gets: a worker host cut off mid-task -> the task runs on the other
worker and the request succeeds; the scheduler host cut off -> 503 within about
connect_timeout, web workers unharmed, calls succeed again once the link is back; a dask
worker stopped (SIGSTOP) -> 504 at the call's timeout while other requests are answered.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from examples_support import example_module
from runner_support import APPS, Response, Server, pid_exited, start_server

pytest.importorskip("distributed")
netns = example_module("bench.netns")
dask_hosts = example_module("bench.dask_hosts")

WHY_NOT = netns.unavailable()
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(WHY_NOT is not None, reason=f"no test hosts: {WHY_NOT}"),
]

CONNECT_TIMEOUT = 2.0
SHORT_TIMEOUT = 2.0  # remote_app.SHORT_TIMEOUT: /hold?timeout=short
LONG_TIMEOUT = 20.0  # remote_app.LONG_TIMEOUT: /work and /hold?timeout=long
SLACK = 3.0  # a busy machine's scheduling delays, far below the TCP timeouts dask would wait


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    """The scheduler and two workers on their hosts; afterwards no host, link or process."""
    with dask_hosts.host_cluster(2, pythonpath=[APPS], log_dir=tmp_path) as cluster:
        yield cluster
    assert netns.leftovers(cluster.net) == []
    assert all(pid_exited(proc.pid) for proc in cluster.processes())


@pytest.fixture
def app(cluster: Any, tmp_path: Path) -> Iterator[Server]:
    """tornado-run with one web worker (so that every request meets the same dask client);
    the pool "remote" is declared in its config file only."""
    config = tmp_path / "remote.toml"
    config.write_text(
        f'[pools.remote]\nkind = "dask"\naddress = "{cluster.address}"\n'
        f"connect_timeout = {CONNECT_TIMEOUT}\n"
    )
    with start_server(
        "remote_app:application", "--workers", "1", "--config", str(config), log_dir=tmp_path
    ) as server:
        yield server


def timed_get(server: Server, path: str, timeout: float = 30) -> tuple[Response, float]:
    started = time.monotonic()
    reply = server.get(path, timeout=timeout)
    return reply, time.monotonic() - started


def wait_started(folder: Path, timeout: float = 20) -> tuple[int, str]:
    """The pid and dask address of the worker that started the held task in `folder`."""
    deadline = time.monotonic() + timeout
    while not (folder / "started").exists():
        assert time.monotonic() < deadline, "the held task did not start"
        time.sleep(0.02)
    pid, address = (folder / "started").read_text().split()
    return int(pid), address


@contextlib.contextmanager
def held_task(folder: Path) -> Iterator[Path]:
    """A folder for one /hold call; released on exit whatever happened."""
    folder.mkdir()
    try:
        yield folder
    finally:
        (folder / "release").touch()


def test_module_with_remote_pool_functions_runs_on_hosts_that_declare_no_pool(
    app: Server, cluster: Any
) -> None:
    with concurrent.futures.ThreadPoolExecutor(6) as callers:
        replies = list(callers.map(lambda _: app.get("/work?ms=200", timeout=30), range(6)))
    assert [reply.status for reply in replies] == [200] * 6
    ran_on = {cluster.host_of(reply.json()["worker"]) for reply in replies}
    assert ran_on <= {"w1", "w2"} and ran_on
    # The scheduler unpickled the tasks (it imports remote_app for its helper) without a pool.
    assert "ConfigurationError" not in cluster.scheduler_log()


def test_worker_host_cut_off_mid_task_runs_elsewhere_and_the_request_succeeds(
    app: Server, cluster: Any, tmp_path: Path
) -> None:
    with held_task(tmp_path / "held") as folder, concurrent.futures.ThreadPoolExecutor(1) as bg:
        call = bg.submit(timed_get, app, f"/hold?dir={folder}&timeout=long")
        _, first = wait_started(folder)
        victim = cluster.host_of(first)
        cluster.net.cut(victim)
        (folder / "release").touch()  # the rerun elsewhere returns at once; the cut one cannot
        reply, took = call.result(timeout=LONG_TIMEOUT + SLACK)
    assert reply.status == 200, reply.body
    assert cluster.host_of(reply.json()["worker"]) != victim
    assert took < LONG_TIMEOUT


def cut_scheduler_during_a_call(app: Server, cluster: Any, folder: Path) -> None:
    """Cut the scheduler's link while a call waits on the cluster: that call and a new one
    answer 503 within about connect_timeout, and the web worker keeps serving meanwhile."""
    with held_task(folder), concurrent.futures.ThreadPoolExecutor(1) as bg:
        waiting = bg.submit(timed_get, app, f"/hold?dir={folder}&timeout=long")
        wait_started(folder)
        cluster.net.cut("sched")
        cut_at = time.monotonic()
        during, took = timed_get(app, "/work?ms=1")
        assert (during.status, took < CONNECT_TIMEOUT + SLACK) == (503, True), during.body
        assert app.get("/pid", timeout=5).status == 200  # the loop is free meanwhile
        held, _ = waiting.result(timeout=LONG_TIMEOUT)
        assert held.status == 503
        assert time.monotonic() - cut_at < CONNECT_TIMEOUT + SLACK


def restore_scheduler_until_calls_succeed(app: Server, cluster: Any) -> None:
    cluster.net.restore("sched")
    deadline = time.monotonic() + 20
    while (status := app.get("/work?ms=1", timeout=30).status) != 200:
        assert status == 503 and time.monotonic() < deadline, "the pool did not recover"
        time.sleep(0.2)


def test_scheduler_host_cut_off_answers_503_then_the_pool_recovers(
    app: Server, cluster: Any, tmp_path: Path
) -> None:
    assert app.get("/work?ms=1").status == 200  # connected before the cut
    web_workers = app.worker_pids()
    for attempt in ("first", "again"):  # a recovered pool notices the next cut as well
        cut_scheduler_during_a_call(app, cluster, tmp_path / attempt)
        assert app.worker_pids() == web_workers  # no web worker was restarted
        restore_scheduler_until_calls_succeed(app, cluster)


def test_stopped_dask_worker_answers_504_on_time_and_the_caller_is_not_blocked(
    app: Server, cluster: Any, tmp_path: Path
) -> None:
    with held_task(tmp_path / "held") as folder, concurrent.futures.ThreadPoolExecutor(1) as bg:
        started = time.monotonic()
        call = bg.submit(timed_get, app, f"/hold?dir={folder}&timeout=short")
        pid, _ = wait_started(folder)
        os.kill(pid, signal.SIGSTOP)
        try:
            (folder / "release").touch()  # too late: its worker cannot run any more
            other = app.get("/work?ms=1", timeout=10)
            pid_reply, pid_took = timed_get(app, "/pid", timeout=5)
            reply, _ = call.result(timeout=LONG_TIMEOUT)
            answered = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
    assert reply.status == 504
    assert SHORT_TIMEOUT <= answered < SHORT_TIMEOUT + SLACK
    assert other.status == 200  # the other worker still serves
    assert pid_reply.status == 200 and pid_took < SLACK
