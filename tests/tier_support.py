"""Helpers for the CPU tier's tests: start a server on tests/apps_tier, find the tier's
processes (broker, zygote, pool processes by their titles), query status and metrics."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from runner_support import Server, http_get, run_cli, wait_until

TIER_APPS = Path(__file__).resolve().parent / "apps_tier"


def pool_processes(server: Server, pool: str = "process") -> list[psutil.Process]:
    """The live pool processes of `pool` under the server's current tier broker(s)."""
    found = []
    for broker in server.tier():
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in broker.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    title = proc.cmdline()[:1]
                    named = bool(title) and title[0].startswith(f"tornado-run: cpu {pool} ")
                    if named and proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(proc)
    return found


def pool_pids(server: Server, pool: str = "process") -> set[int]:
    return {proc.pid for proc in pool_processes(server, pool)}


def wait_for_pool_size(server: Server, size: int, pool: str = "process") -> set[int]:
    """Wait until `pool` has exactly `size` processes; return their pids."""
    return wait_until(
        lambda: (pids := pool_pids(server, pool)) and len(pids) == size and pids,
        20,
        f"pool {pool!r} to have {size} processes",
    )


def tier_tree(server: Server) -> list[psutil.Process]:
    """The brokers and everything below them."""
    tree = []
    for broker in server.tier():
        tree.append(broker)
        with contextlib.suppress(psutil.NoSuchProcess):
            tree += broker.children(recursive=True)
    return tree


def status(control: Path) -> dict[str, Any]:
    """`tornado-run status --json` of the master on control socket `control`."""
    done = run_cli("status", "--json", "--control", str(control))
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def get_json(server: Server, path: str, timeout: float = 20) -> tuple[int, Any]:
    reply = server.get(path, timeout=timeout)
    try:
        return reply.status, reply.json()
    except ValueError:
        return reply.status, reply.body.decode(errors="replace")


class Background:
    """Requests sent from threads; `results` holds (status, body) or the error, in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.threads: list[threading.Thread] = []
        self.results: dict[int, Any] = {}

    def start(self, path: str, timeout: float = 30) -> int:
        index = len(self.threads)

        def run() -> None:
            try:
                self.results[index] = get_json(self.server, path, timeout)
            except OSError as error:
                self.results[index] = error

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        return index

    def join(self, timeout: float = 30) -> dict[int, Any]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a request never ended"
        return self.results


def metrics_text(port: int) -> str:
    return http_get(port, "/metrics").body.decode()


def until(predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    return wait_until(predicate, timeout, what)
