"""The CPU tier's table: how much of the cores CPU-bound requests turn into useful work
through `@unblock(pool="process")` under `--workers auto`, against the same CPU burnt in a
blocking handler in the web workers. Each task spins until its own `time.process_time()`
has grown by its length, so useful share = completed x task CPU / (cores x wall), free of
calibration."""

from __future__ import annotations

from tornado_run.runner.cpus import usable_cores

from .harness import free_port, running, warm_up
from .loadgen import closed_loop, load_tool
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import tornado_run

TIER_APP = "examples.bench.tier_app:application"
TASK_MS = (2, 20)
ROUTES = [("@unblock(pool='process')", "/offloaded"), ("blocking handler", "/blocking")]


def _measure(path: str, ms: int, settings: Settings) -> Values:
    load_tool()
    cores = usable_cores()
    port = free_port()
    server = tornado_run(port, app=TIER_APP, workers="auto")
    server.ready_path = "/ready"
    with running(server):
        warm_up(server, f"{path}?ms={ms}", settings.warmup)
        cpu_before = server.cpu_seconds()
        result = closed_loop(
            f"http://127.0.0.1:{port}{path}?ms={ms}", 4 * cores, settings.seconds, timeout=30
        )
        server_cpu = server.cpu_seconds() - cpu_before
    useful_cpu = result.ok_per_second * result.seconds * ms / 1000
    return {
        "req_s": result.ok_per_second,
        "useful": result.ok_per_second * ms / 1000 / cores,
        "of_server_cpu": useful_cpu / server_cpu if server_cpu > 0 else None,
        "failed": float(result.non_2xx + result.errors),
        "p99_ms": result.p99_ms,
    }


def tier_section(settings: Settings, log: Log) -> Section:
    cores = usable_cores()
    variants = [
        variant(f"{ms} ms task, {name}", _measure, path, ms, settings)
        for ms in TASK_MS
        for name, path in ROUTES
    ]
    return Section(
        "tier",
        f"CPU tier: useful share of {cores} cores for CPU-bound requests, --workers auto, "
        f"{4 * cores} connections",
        [
            Column("req_s", "req/s", 1),
            Column("useful", "useful share of the cores", 2),
            Column("of_server_cpu", "useful share of the server's CPU", 2),
            Column("p99_ms", "p99 ms", 1),
            Column("failed", "failed"),
        ],
        interleaved(settings.rounds, variants, log),
        notes=[
            "useful share = completed requests x task CPU / (cores x wall); each task spins "
            "until its own process_time() grew by its length; the load generator (wrk) runs "
            "on the same cores, alike for every row",
            "useful share of the server's CPU = the same task CPU / CPU time of the server's "
            "whole process tree (master, workers, tier): what the server spends beside the "
            "work itself, unaffected by other load on the machine",
        ],
    )
