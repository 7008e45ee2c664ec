"""Sections about offloading: the seed's async-tasks table, the CPU table (`/slow` as a fraction
of the physical limit with `/fast` probed meanwhile), overload at 4x capacity, and the
dispatch micro-benchmark."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tornado_run.runner.cpus import usable_cores

from .harness import REPO_ROOT, Server, Skip, free_port, help_text, running, warm_up
from .loadgen import Probe, closed_loop, load_tool, open_loop, percentile
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import tornado_run

ASYNC_APP = "examples.async_tasks:application"
ASYNC_ROUTES = [
    ("blocking handler (time.sleep on the loop)", "/blocking"),
    ("background() fire-and-forget", "/background"),
    ("awaited coroutine (asyncio.sleep)", "/coroutine"),
    ("@unblock thread", "/thread"),
    ("@unblock(timeout=0.05) -> 504", "/timeout"),
    ("@unblock subprocess `sleep`", "/command"),
]
BLOCKING_MS = 100
ASYNC_CONNECTIONS = 32


def _measure_async(path: str, settings: Settings) -> Values:
    load_tool()
    port = free_port()
    server = tornado_run(port, "--graceful-timeout", "1", app=ASYNC_APP, workers="1")
    server.ready_path = "/jobs"
    with running(server):
        result = closed_loop(
            f"http://127.0.0.1:{port}{path}?ms={BLOCKING_MS}", ASYNC_CONNECTIONS, settings.seconds
        )
    return {
        "req_s": result.requests / result.seconds if result.seconds else None,
        "ok_req_s": result.ok_per_second,
        "non_2xx_pct": 100 * result.non_2xx / max(1, result.requests),
        "errors": float(result.errors),
        "p99_ms": result.p99_ms,
    }


def async_section(settings: Settings, log: Log) -> Section:
    """(b) the seed's table: one worker, a 100 ms blocking call made six ways."""
    variants = [variant(name, _measure_async, path, settings) for name, path in ASYNC_ROUTES]
    return Section(
        "async",
        f"Async tasks: a {BLOCKING_MS} ms blocking call, 1 worker, {ASYNC_CONNECTIONS} connections",
        [
            Column("req_s", "answered req/s", 1),
            Column("ok_req_s", "2xx req/s", 1),
            Column("non_2xx_pct", "non-2xx %", 1),
            Column("errors", "socket errors"),
            Column("p99_ms", "p99 ms", 1),
        ],
        interleaved(settings.rounds, variants, log),
        ratio_key="req_s",
        baseline=ASYNC_ROUTES[0][0],
        notes=[
            "non-2xx: 504 from the timeout row by design; 503 where a pool sheds load past "
            "its max_pending (thread pool default: 8 x size)",
            "seed figures (ab, its own sleep lengths): blocking 0.99 req/s, fire-and-forget 556, "
            "coroutine 101, thread pool 1912, with_timeout 116",
        ],
    )


def task_ms(repeat: int) -> float:
    """Median wall time of one `/slow` task measured in this process, in ms."""
    try:
        from examples.bench.apps import SLOW_MS
        from examples.cpu import burn
    except ImportError as err:
        raise Skip(f"cannot import the CPU example apps: {err}") from err
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        burn(SLOW_MS)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def stdlib_peer(port: int) -> Server:
    script = REPO_ROOT / "examples" / "bench" / "peer_stdlib_pool.py"
    command = [sys.executable, str(script), "--port", str(port)]
    return Server("stdlib ProcessPoolExecutor", command, port, term_whole_tree=True)


def _cpu_server(app: str | None, workers: str) -> Callable[[int], Server]:
    if app is None:
        return stdlib_peer
    return lambda port: tornado_run(port, app=f"examples.bench.apps:{app}", workers=workers)


CPU_VARIANTS = [
    ("tornado-run -w 1, @unblock(pool='process')", "process_application", "1"),
    ("tornado-run -w auto, @unblock(pool='process')", "process_application", "auto"),
    ("tornado-run -w auto, blocking handler", "blocking_application", "auto"),
    ("tornado-run -w auto, @unblock thread", "thread_application", "auto"),
    ("stdlib ProcessPoolExecutor, 1 web process", None, "1"),
]


def _measure_cpu(make: Callable[[int], Server], limit: float, settings: Settings) -> Values:
    load_tool()
    port = free_port()
    server = make(port)
    server.ready_path = "/fast"
    connections = 4 * usable_cores()
    with running(server):
        url = f"http://127.0.0.1:{port}/slow"
        warm_up(server, "/slow", settings.warmup)  # pool processes start lazily
        probe = Probe(port, "/fast")
        probe.start()
        try:
            result = closed_loop(url, connections, settings.seconds, timeout=30)
        finally:
            probe.finish()
    return {
        "slow_req_s": result.ok_per_second,
        "fraction": result.ok_per_second / limit,
        "slow_non_2xx": float(result.non_2xx + result.errors),
        "fast_p50_ms": percentile(probe.latencies, 50),
        "fast_p99_ms": percentile(probe.latencies, 99),
        "fast_failed": float(probe.failures),
    }


def cpu_sections(settings: Settings, log: Log) -> list[Section]:
    """(c) the CPU table and the overload table."""
    cores = usable_cores()
    measured = task_ms(5 if settings.quick else 20)
    limit = cores / (measured / 1000)
    log(f"  task time {measured:.1f} ms on {cores} cores: physical limit {limit:.0f} req/s")
    variants = [
        variant(name, _measure_cpu, _cpu_server(app, workers), limit, settings)
        for name, app, workers in CPU_VARIANTS
    ]
    cpu = Section(
        "cpu",
        f"CPU: /slow ({measured:.1f} ms pure-Python loop) under wrk -c{4 * cores}, "
        f"/fast probed meanwhile; limit = {cores} cores / task time = {limit:.0f} req/s",
        [
            Column("slow_req_s", "/slow req/s", 1),
            Column("fraction", "of limit", 2),
            Column("fast_p50_ms", "/fast p50 ms", 1),
            Column("fast_p99_ms", "/fast p99 ms", 1),
            Column("slow_non_2xx", "/slow failed"),
        ],
        interleaved(settings.rounds, variants, log),
        ratio_key="slow_req_s",
        baseline=CPU_VARIANTS[-1][0],
    )
    overload = [
        variant(name, _measure_overload, _cpu_server(app, workers), limit, settings)
        for name, app, workers in (CPU_VARIANTS[1], CPU_VARIANTS[-1])
    ]
    over = Section(
        "overload",
        f"Overload: open-loop arrivals at 4x the limit ({4 * limit:.0f} req/s) on /slow",
        [
            Column("offered_rps", "offered req/s"),
            Column("shed_pct", "shed (503) %", 1),
            Column("ok_pct", "answered 200 %", 1),
            Column("unanswered_pct", "no answer in time %", 1),
            Column("accepted_p99_ms", "accepted p99 ms", 0),
            Column("peak_rss_mib", "peak RSS MiB", 0),
        ],
        interleaved(settings.rounds, overload, log),
        notes=[
            "peak RSS: summed over the server's process tree (web workers, pool processes "
            "and helpers), sampled every 100 ms; shared pages count once per process"
        ],
    )
    return [cpu, over]


def _measure_overload(make: Callable[[int], Server], limit: float, settings: Settings) -> Values:
    port = free_port()
    server = make(port)
    server.ready_path = "/fast"
    peak = [0.0]
    wait = 5.0 if settings.quick else 10.0
    with running(server):
        warm_up(server, "/slow", settings.warmup)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], server.rss_mib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = open_loop(port, "/slow", 4 * limit, settings.seconds, timeout=wait)
        finally:
            stop.set()
            sampler.join(timeout=5)
    total = max(1, result.offered)
    return {
        "offered_rps": result.offered / settings.seconds,
        "shed_pct": 100 * result.statuses[503] / total,
        "ok_pct": 100 * result.statuses[200] / total,
        "unanswered_pct": 100 * result.statuses[0] / total,
        "accepted_p99_ms": percentile(result.ok_latencies, 99),
        "peak_rss_mib": peak[0] or None,
    }


def dispatch_section(settings: Settings, log: Log) -> Section:
    """(d) run examples/bench/dispatch.py (the decorator library's micro-benchmark) as is."""
    section = Section("dispatch", "Dispatch overhead per call (examples/bench/dispatch.py)", [])
    script = REPO_ROOT / "examples" / "bench" / "dispatch.py"
    if not script.exists():
        section.notes.append("skipped: examples/bench/dispatch.py is not present")
        return section
    command = [sys.executable, str(script)]
    if settings.quick and "--quick" in help_text(command):
        command.append("--quick")
    log(f"  {' '.join(command[1:])}")
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=90 if settings.quick else 900,
        )
    except subprocess.TimeoutExpired:
        section.notes.append("skipped: dispatch.py did not finish in time")
        return section
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        section.notes.append(f"skipped: dispatch.py exited with {done.returncode}: {last}")
    section.text = done.stdout
    return section


FORWARD_ROUTES = [
    ("blocking client on the loop (urllib, like requests)", "/fetch-blocking/echo"),
    ("blocking client under @unblock", "/fetch-unblock/echo"),
    ("AsyncHTTPClient", "/proxy/echo"),
]
UPSTREAM_DELAY_MS = 100


def _measure_forward(path: str, settings: Settings) -> Values:
    load_tool()
    upstream_port, port = free_port(), free_port()
    echo = tornado_run(upstream_port, app="examples.forwarding:echo_application", workers="1")
    proxy = tornado_run(port, app="examples.forwarding:application", workers="1")
    proxy.env = {"FORWARD_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
    proxy.ready_path = "/proxy/echo"
    with running(echo), running(proxy):
        url = f"http://127.0.0.1:{port}{path}?delay_ms={UPSTREAM_DELAY_MS}"
        result = closed_loop(url, ASYNC_CONNECTIONS, settings.seconds)
    return {
        "req_s": result.ok_per_second,
        "non_2xx_pct": 100 * result.non_2xx / max(1, result.requests),
        "p99_ms": result.p99_ms,
    }


def forward_section(settings: Settings, log: Log) -> Section:
    """The seed's `requests` vs `AsyncHTTPClient` table, through examples/forwarding.py."""
    variants = [variant(name, _measure_forward, path, settings) for name, path in FORWARD_ROUTES]
    return Section(
        "forward",
        f"Forwarding to an upstream that answers in {UPSTREAM_DELAY_MS} ms, 1 worker, "
        f"{ASYNC_CONNECTIONS} connections",
        [
            Column("req_s", "2xx req/s", 1),
            Column("non_2xx_pct", "non-2xx %", 1),
            Column("p99_ms", "p99 ms", 1),
        ],
        interleaved(settings.rounds, variants, log),
        ratio_key="req_s",
        baseline=FORWARD_ROUTES[0][0],
        notes=["seed figures: requests 0.49 req/s, AsyncHTTPClient 30.9"],
    )
