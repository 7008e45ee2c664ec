"""The flood section: idle connections pile up while wrk loads the hello endpoint. Each server
is measured without and with the flood; the `ulimit -n 1024` rows are a new user's default
open-files limit, where raw Tornado's accept handler spins on EMFILE."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Callable

from .harness import Server, Skip, free_port, running
from .loadgen import LoadResult, closed_loop, load_tool
from .plan import Column, Log, Section, Settings, Values, variant
from .plan import interleaved as measure_rounds
from .sections_web import CONNECTIONS, raw_fork, tornado_run

FLOOD = 2000
QUICK_FLOOD = 200
FLOOD_DELAY = 0.5
"""Seconds into the wrk run at which the idle connections arrive."""


def _limited(make: Callable[[int], Server], limit: int) -> Callable[[int], Server]:
    """`make`, started under `ulimit -n LIMIT` (soft and hard)."""

    def start(port: int) -> Server:
        server = make(port)
        shell = f'ulimit -n {limit} && exec "$@"'
        server.command = ["sh", "-c", shell, "sh", *server.command]
        server.name += f", ulimit -n {limit}"
        return server

    return start


def _raise_own_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard or (soft < needed and hard == resource.RLIM_INFINITY):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    elif soft < needed:
        raise Skip(f"the open-files limit {hard} is below the {needed} this row needs")


def _hold(port: int, count: int, start: threading.Event, done: threading.Event) -> None:
    """After `start`, open `count` idle connections (the kernel completes them from the
    listen queue even when nobody accepts) and hold them until `done`."""
    socks: list[socket.socket] = []
    start.wait()
    try:
        for _ in range(count):
            if done.is_set():
                break
            with contextlib.suppress(OSError):
                sock = socket.socket()
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
                socks.append(sock)
        done.wait()
    finally:
        for sock in socks:
            sock.close()


def _measure(make: Callable[[int], Server], settings: Settings, flood: int) -> Values:
    load_tool()
    _raise_own_limit(flood + 256)
    port = free_port()
    with running(make(port)) as server:
        lines_before = len(server.log_text().splitlines())
        start, done = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold, args=(port, flood, start, done), daemon=True)
        holder.start()
        outcome: list[LoadResult] = []
        url = f"http://127.0.0.1:{port}/"
        load = threading.Thread(
            target=lambda: outcome.append(closed_loop(url, CONNECTIONS, settings.seconds + 1)),
            daemon=True,
        )
        cpu_before = server.cpu_seconds()
        load.start()
        time.sleep(FLOOD_DELAY)
        start.set()
        load.join(settings.seconds + 60)
        cpu = server.cpu_seconds() - cpu_before
        done.set()
        holder.join(30)
        log_lines = len(server.log_text().splitlines()) - lines_before
    if not outcome:
        raise Skip("the load generator did not report")
    result = outcome[0]
    return {
        "req_s": result.ok_per_second,
        "p99_ms": result.p99_ms,
        "errors": float(result.errors + result.non_2xx),
        "req_per_cpu_s": result.requests / cpu if cpu > 0 else None,
        "log_lines": float(log_lines),
    }


def flood_section(settings: Settings, log: Log) -> Section:
    """(f) wrk on hello world while idle connections flood the server."""
    flood = QUICK_FLOOD if settings.quick else FLOOD
    servers: list[tuple[str, Callable[[int], Server]]] = [
        ("tornado-run --workers 2", lambda port: tornado_run(port)),
        ("raw fork_processes(2)", raw_fork),
    ]
    variants = []
    for name, make in servers:
        variants.append(variant(f"{name}, no flood", _measure, make, settings, 0))
        variants.append(variant(f"{name}, {flood} idle", _measure, make, settings, flood))
    for name, make in servers:
        limited = f"{name}, ulimit -n 1024, {flood} idle"
        variants.append(variant(limited, _measure, _limited(make, 1024), settings, flood))
    return Section(
        "flood",
        f"Connection flood: wrk -c{CONNECTIONS} on / while {flood} idle connections arrive",
        [
            Column("req_s", "req/s"),
            Column("p99_ms", "p99 ms", 2),
            Column("errors", "errors"),
            Column("req_per_cpu_s", "req per server CPU-s"),
            Column("log_lines", "log lines"),
        ],
        measure_rounds(settings.rounds, variants, log),
        notes=[
            f"the idle connections arrive {FLOOD_DELAY:g} s into the wrk run and stay open",
            "tornado-run: --max-connections 1000 per worker (default); past it connections "
            "wait in the listen queue",
            "ulimit -n 1024 rows: raw Tornado's accept handler retries EMFILE at once",
        ],
    )
