"""Sections about the launcher itself: hello world against the peers (throughput, CPU cost,
memory, respawn time), failed requests across HUP reloads, and connection spread."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from .harness import (
    REPO_ROOT,
    Server,
    Skip,
    executable,
    free_port,
    help_text,
    http_get,
    running,
    tornado_run_command,
    warm_up,
)
from .loadgen import LoadResult, closed_loop, connection_spread, load_tool
from .plan import Column, Log, Section, Settings, Values, interleaved, variant

HELLO = "examples.bench.hello:application"
CONNECTIONS = 64


def tornado_run(port: int, *extra: str, app: str = HELLO, workers: str = "2") -> Server:
    command = [*tornado_run_command(), app, "--workers", workers, "--bind", f"127.0.0.1:{port}"]
    return Server(f"tornado-run {' '.join(extra)}".strip(), [*command, *extra], port)


def raw_fork(port: int) -> Server:
    script = REPO_ROOT / "examples" / "bench" / "peer_raw_fork.py"
    command = [sys.executable, str(script), "--port", str(port), "--workers", "2"]
    return Server("raw fork_processes", command, port, term_whole_tree=True)


def gunicorn(port: int) -> Server:
    path = executable("gunicorn")
    if path is None:
        raise Skip("gunicorn is not installed (pip install gunicorn)")
    command = [path, "-k", "tornado", "-w", "2", "-b", f"127.0.0.1:{port}"]
    if "--no-control-socket" in help_text([path]):
        command.append("--no-control-socket")  # gunicorn 23+ shares one control socket path
    return Server("gunicorn -k tornado", [*command, HELLO], port)


def respawn_ms(server: Server, deadline: float = 10.0) -> float | None:
    """Kill -9 a worker that is serving; return ms until a process that did not exist before
    answers a request (None if none does within `deadline` seconds)."""
    serving: set[int] = set()
    for _ in range(30):
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            serving.add(int(http_get(server.port, "/pid")[1]))
    before = {p.pid for p in server.tree()}
    targets = sorted(serving & before)
    if not targets:
        return None
    started = time.perf_counter()
    os.kill(targets[0], signal.SIGKILL)
    while time.perf_counter() - started < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            status, body = http_get(server.port, "/pid", timeout=1.0)
            if status == 200 and int(body) not in before:
                return (time.perf_counter() - started) * 1000
        time.sleep(0.002)
    return None


def _measure_hello(make: Callable[[int], Server], settings: Settings) -> Values:
    load_tool()
    port = free_port()
    with running(make(port)) as server:
        url = f"http://127.0.0.1:{port}/"
        warm_up(server, "/", settings.warmup)
        cpu_before = server.cpu_seconds()
        result = closed_loop(url, CONNECTIONS, settings.seconds)
        cpu = server.cpu_seconds() - cpu_before
        pss = server.pss_mib()
        respawn = respawn_ms(server)
    return {
        "req_s": result.ok_per_second,
        "req_per_cpu_s": result.requests / cpu if cpu > 0 else None,
        "p99_ms": result.p99_ms,
        "errors": float(result.errors + result.non_2xx),
        "pss_mib": pss,
        "respawn_ms": respawn,
    }


def hello_section(settings: Settings, log: Log) -> Section:
    """(a) hello world: tornado-run (asyncio and uvloop) vs raw fork_processes vs gunicorn."""
    makers: list[tuple[str, Callable[[int], Server]]] = [
        ("raw bind_sockets + fork_processes(2)", raw_fork),
        ("tornado-run --workers 2 --loop asyncio", _with("--loop", "asyncio")),
        ("tornado-run --workers 2 --loop uvloop", _with("--loop", "uvloop")),
        ("gunicorn -k tornado -w 2", gunicorn),
    ]
    notes = []
    if "--block-warn" in help_text(tornado_run_command()):
        # The heartbeat is always on; the blocked-loop watchdog is the optional part to price.
        watched = ("--loop", "uvloop", "--block-warn", "100")
        makers.insert(3, (f"tornado-run --workers 2 {' '.join(watched)}", _with(*watched)))
        notes.append("--block-warn row: the watchdog's cost, against the --loop uvloop row")
    variants = [variant(name, _measure_hello, make, settings) for name, make in makers]
    return Section(
        "hello",
        f"Hello world (tornado-run rows: --http auto, the fast server), wrk -t2 -c{CONNECTIONS}, "
        "2 workers each",
        [
            Column("req_s", "req/s"),
            Column("req_per_cpu_s", "req per server CPU-s"),
            Column("p99_ms", "p99 ms", 2),
            Column("errors", "errors"),
            Column("pss_mib", "PSS MiB", 1),
            Column("respawn_ms", "kill -9 to serving, ms", 1),
        ],
        interleaved(settings.rounds, variants, log),
        ratio_key="req_per_cpu_s",
        baseline=makers[0][0],
        notes=[
            "req/s depends on how the shared socket spreads connections; "
            "req per server CPU-second does not",
            "PSS: proportional set size summed over the server's process tree",
            "tornado-run rows use its default socket mode; the spread table compares both",
            *notes,
        ],
    )


def _with(*options: str) -> Callable[[int], Server]:
    return lambda port: tornado_run(port, *options)


def _socket_modes() -> list[tuple[str, Callable[[int], Server]]]:
    """tornado-run with a shared socket and, when this version has it, with --reuse-port."""
    text = help_text(tornado_run_command())
    if "--reuse-port" not in text:
        return [("tornado-run --workers 2", _with())]
    shared = ("--no-reuse-port",) if "--no-reuse-port" in text else ()
    return [
        (f"tornado-run --workers 2 {' '.join(shared)}".strip(), _with(*shared)),
        ("tornado-run --workers 2 --reuse-port", _with("--reuse-port")),
    ]


def _measure_hups(make: Callable[[int], Server], settings: Settings, hups: int) -> Values:
    load_tool()
    port = free_port()
    with running(make(port)) as server:
        seconds = max(settings.seconds, 1.5 * hups)
        outcome: list[LoadResult] = []
        url = f"http://127.0.0.1:{port}/"
        load = threading.Thread(
            target=lambda: outcome.append(closed_loop(url, CONNECTIONS, seconds)), daemon=True
        )
        initial = set(server.workers())
        seen = set(initial)
        load.start()
        for _ in range(hups):
            _watch_workers(server, seen, time.monotonic() + seconds / (hups + 1))
            server.signal(signal.SIGHUP)
        _watch_workers(server, seen, time.monotonic() + seconds + 60, until_done=load)
        if not outcome:
            raise Skip("the load generator did not report")
        result = outcome[0]
    failed = result.errors + result.non_2xx
    return {
        "hups": float(hups),
        "new_workers": float(len(seen - initial)),
        "requests": float(result.requests),
        "failed": float(failed),
        "failed_pct": 100 * failed / max(1, result.requests),
    }


def _watch_workers(
    server: Server, seen: set[int], deadline: float, until_done: threading.Thread | None = None
) -> None:
    """Add the server's worker pids to `seen` every 50 ms until `deadline` (or until the
    thread `until_done` ends), to count how many workers a reload really started."""
    while time.monotonic() < deadline:
        seen.update(server.workers())
        if until_done is not None and not until_done.is_alive():
            return
        time.sleep(0.05)


def reload_section(settings: Settings, log: Log) -> Section:
    """(e) failed requests while the master is sent HUP repeatedly under load."""
    hups = 2 if settings.quick else 10
    makers = [*_socket_modes(), ("gunicorn -k tornado -w 2", gunicorn)]
    variants = [variant(n, _measure_hups, m, settings, hups) for n, m in makers]
    return Section(
        "reload",
        f"Failed requests across {hups} HUPs under wrk -c{CONNECTIONS}",
        [
            Column("new_workers", "workers started"),
            Column("requests", "requests"),
            Column("failed", "failed"),
            Column("failed_pct", "failed %", 3),
        ],
        interleaved(settings.rounds, variants, log),
    )


def _measure_spread(make: Callable[[int], Server]) -> Values:
    port = free_port()
    with running(make(port)) as server:
        before = connection_spread(port, "/pid", CONNECTIONS)
        respawn = respawn_ms(server)
        time.sleep(0.2)
        after = connection_spread(port, "/pid", CONNECTIONS)
    return {
        "busiest_pct": 100 * max(before.values()) / CONNECTIONS,
        "workers_seen": float(len([k for k in before if k != "none"])),
        "busiest_after_kill_pct": 100 * max(after.values()) / CONNECTIONS,
        "respawn_ms": respawn,
    }


def spread_section(settings: Settings, log: Log) -> Section:
    """(e) how 64 keep-alive connections spread over 2 workers, shared socket vs reuse-port."""
    makers = [*_socket_modes(), ("raw fork_processes(2)", raw_fork)]
    notes = []
    if len(makers) == 2:
        notes.append("--reuse-port row skipped: this tornado-run has no --reuse-port option")
    variants = [variant(n, _measure_spread, m) for n, m in makers]
    return Section(
        "spread",
        f"Connection spread: {CONNECTIONS} keep-alive connections over 2 workers",
        [
            Column("busiest_pct", "busiest worker %", 0),
            Column("workers_seen", "workers used"),
            Column("busiest_after_kill_pct", "busiest after kill -9 %", 0),
        ],
        interleaved(settings.rounds, variants, log),
        notes=notes,
    )
