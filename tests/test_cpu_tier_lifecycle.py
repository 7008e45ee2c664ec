"""The CPU tier across the master's lifecycle: HUP replaces every tier process after its
calls in flight end (no call fails), TERM lets calls in flight finish before the tier stops.
Real servers, real signals."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from runner_support import Server
from tier_support import TIER_APPS, Background, get_json, tier_tree, until


class CpuLoad:
    """Client loops of CPU calls (`/burn`) until stopped; counts answers and failures."""

    def __init__(self, server: Server, clients: int = 3, seconds: float = 60) -> None:
        self.server = server
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.pool_pids: set[int] = set()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> CpuLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                code, body = get_json(self.server, "/burn?ms=5")
            except OSError as error:
                self.failures.append(repr(error))
                continue
            if code == 200:
                self.ok += 1
                self.pool_pids.add(body["pid"])
            else:
                self.failures.append(f"{code} {body}")

    def wait_for(self, count: int, timeout: float = 30) -> None:
        target = self.ok + count
        until(lambda: self.ok >= target or self.failures, f"{count} more calls", timeout)
        assert not self.failures, self.failures[:5]


@pytest.mark.timeout(120)
def test_hup_under_cpu_calls_fails_none_and_replaces_every_tier_process(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    server = launch("tier_app:application", "--workers", "2", app_dir=TIER_APPS)
    with CpuLoad(server) as load:
        load.wait_for(50)
        old_tree = tier_tree(server)
        old_pool_pids = set(load.pool_pids)
        assert old_pool_pids and {p.pid for p in old_tree} >= old_pool_pids
        mark = tmp_path / "long"
        long_call = Background(server)
        long_call.start(f"/nap?s=3&mark={mark}")  # in flight on the old tier across the HUP
        until(mark.exists, "the long call to start")
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload complete", timeout=60)
        until(
            lambda: not [p for p in old_tree if p.is_running() and p.status() != "zombie"],
            "the old tier to drain and exit",
            timeout=60,
        )
        load.pool_pids.clear()
        load.wait_for(50)
    assert not load.failures, load.failures[:5]
    (code, body), *_ = long_call.join(30).values()
    assert code == 200 and body["pid"] in old_pool_pids, body
    new_tree = tier_tree(server)
    assert new_tree and not {p.pid for p in new_tree} & {p.pid for p in old_tree}
    assert load.pool_pids and not load.pool_pids & old_pool_pids
    server.wait_for_log(r"cpu tier generation 0 stopped \(exited with code 0\)")


@pytest.mark.timeout(90)
def test_term_lets_cpu_calls_in_flight_finish_then_stops_the_tier(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    server = launch("tier_app:application", "--workers", "2", app_dir=TIER_APPS)
    mark = tmp_path / "running"
    requests = Background(server)
    requests.start(f"/nap?s=1.5&mark={mark}")
    until(mark.exists, "the call to start")
    tree = tier_tree(server)
    server.send_signal(signal.SIGTERM)
    (code, body), *_ = requests.join(30).values()
    assert code == 200, body
    assert server.wait(30) == 0
    assert "cpu tier generation 0 stopped (exited with code 0)" in server.log()
    psutil.wait_procs(tree, timeout=5)
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
