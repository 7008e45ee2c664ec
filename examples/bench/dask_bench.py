"""The dask pool against the local process pool: per-call round-trip overhead, the CPU each
call costs, and the throughput of a CPU-bound function, called directly and as the `/slow`
endpoint of `tornado-run --workers auto` (`examples/bench/apps.py` against
`examples/bench/dask_app.py`). Prints markdown tables.

    python -m examples.bench.dask_bench [--quick]

Run from the repository root with the dask extra installed (`pip install -e '.[dask]'`). It
starts a real dask scheduler and 2 single-threaded dask workers (`dask scheduler`,
`dask worker`) on loopback, so both pools get 2 processes on the same machine: the figures
show what the network hop and the scheduler cost, not what more machines would add. Rates per
CPU-second count only the processes taking part, so they hold on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from tornado_run.decorators.pools.api import Pool, PoolSpec
from tornado_run.decorators.pools.dask import create_pool
from tornado_run.decorators.pools.process import ProcessPool

from examples.bench.harness import Server, Skip, free_port, running, tornado_run_command
from examples.bench.loadgen import LoadResult, closed_loop
from examples.cpu import burn

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL_PROCESSES = 2
CPU_TASK_MS = 20


@dataclass(frozen=True)
class Settings:
    round_trips: int
    burst_calls: int
    burst_concurrency: int
    cpu_seconds: float
    cpu_concurrency: int
    http_seconds: float
    http_connections: int


QUICK = Settings(
    round_trips=200,
    burst_calls=1000,
    burst_concurrency=32,
    cpu_seconds=3,
    cpu_concurrency=8,
    http_seconds=5,
    http_connections=16,
)
FULL = Settings(
    round_trips=2000,
    burst_calls=5000,
    burst_concurrency=32,
    cpu_seconds=10,
    cpu_concurrency=8,
    http_seconds=15,
    http_connections=16,
)
MAX_PENDING = 1000  # the bench measures speed, not shedding


async def round_trip_us(pool: Pool, calls: int) -> list[float]:
    """Microseconds per trivial call, one call at a time."""
    samples = []
    for n in range(calls):
        started = time.perf_counter()
        await pool.run(abs, (-n,), {}, timeout=30)
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


async def burst_rate(pool: Pool, calls: int, concurrency: int) -> float:
    """Trivial calls per second with `concurrency` callers at once."""
    remaining = iter(range(calls))

    async def caller() -> None:
        for n in remaining:
            await pool.run(abs, (-n,), {}, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def cpu_rate(pool: Pool, seconds: float, concurrency: int) -> float:
    """`burn(CPU_TASK_MS)` calls finished per second by `concurrency` callers in a closed loop."""
    deadline = time.perf_counter() + seconds
    done = [0]

    async def caller() -> None:
        while time.perf_counter() < deadline:
            await pool.run(burn, (CPU_TASK_MS,), {}, timeout=60)
            done[0] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done[0] / (time.perf_counter() - started)


def cpu_seconds_used() -> float:
    """CPU seconds of this process and every process under it (pool processes, the dask
    scheduler and workers), so contention from other programs on the machine does not count."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


async def measure(pool: Pool, settings: Settings) -> dict[str, float]:
    await pool.run(abs, (1,), {}, timeout=60)  # start processes / connect before timing
    await pool.run(burn, (1,), {}, timeout=60)  # import examples.cpu in the workers
    samples = await round_trip_us(pool, settings.round_trips)
    figures = {
        "rt_median": statistics.median(samples),
        "rt_p99": statistics.quantiles(samples, n=100)[98],
    }
    used = cpu_seconds_used()
    figures["burst"] = await burst_rate(pool, settings.burst_calls, settings.burst_concurrency)
    figures["burst_cpu_ms"] = (cpu_seconds_used() - used) * 1000 / settings.burst_calls
    used = cpu_seconds_used()
    started = time.perf_counter()
    figures["cpu"] = await cpu_rate(pool, settings.cpu_seconds, settings.cpu_concurrency)
    calls = figures["cpu"] * (time.perf_counter() - started)
    figures["cpu_per_cpu_s"] = calls / max(cpu_seconds_used() - used, 1e-9)
    return figures


async def measure_both(address: str, settings: Settings) -> dict[str, dict[str, float]]:
    results = {}
    pools: dict[str, Callable[[], Pool]] = {
        "process pool": lambda: ProcessPool(
            PoolSpec(name="process", kind="process", size=POOL_PROCESSES, max_pending=MAX_PENDING)
        ),
        "dask pool": lambda: create_pool(
            PoolSpec(
                name="cluster", kind="dask", max_pending=MAX_PENDING, options={"address": address}
            )
        ),
    }
    for name, make in pools.items():
        pool = make()
        try:
            results[name] = await measure(pool, settings)
        finally:
            await pool.aclose(10)
    return results


@dataclass
class DaskProcesses:
    """The scheduler and worker processes `dask_cluster` started."""

    address: str
    procs: list[subprocess.Popen[bytes]]

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the scheduler, the nannies and the workers."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(proc.pid)
                for member in [root, *root.children(recursive=True)]:
                    times = member.cpu_times()
                    total += times.user + times.system
        return total


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[DaskProcesses]:
    """A `dask scheduler` and `dask worker --nworkers N --nthreads 1` on loopback; yields them
    once the workers have joined, and stops both process trees on exit."""
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "scheduler.json"
        scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        worker = [dask, "worker", "--host", "127.0.0.1", "--no-dashboard", "--nthreads", "1"]
        procs = [
            subprocess.Popen([*scheduler, "--scheduler-file", str(info)], env=env, **quiet),
            subprocess.Popen(
                [*worker, "--nworkers", str(workers), "--scheduler-file", str(info)],
                env=env,
                cwd=REPO_ROOT,
                **quiet,
            ),
        ]
        try:
            yield DaskProcesses(_wait_for_workers(info, workers, timeout=60), procs)
        finally:
            _stop_trees(procs)


def _wait_for_workers(info: Path, workers: int, timeout: float) -> str:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while not (info.exists() and info.read_text()):
        if time.monotonic() > deadline:
            raise SystemExit(f"dask scheduler did not start within {timeout:.0f} s")
        time.sleep(0.05)
    address: str = json.loads(info.read_text())["address"]
    with Client(address, timeout=timeout) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers, timeout=timeout)
    return address


def _stop_trees(procs: list[subprocess.Popen[bytes]]) -> None:
    tree = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            tree += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
    for proc in reversed(procs):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(tree, timeout=15)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)


def task_seconds() -> float:
    """What one `burn(CPU_TASK_MS)` takes in this process: the fastest of 10 runs, the best
    estimate of an uncontended core on a shared machine."""
    runs = []
    for _ in range(10):
        started = time.perf_counter()
        burn(CPU_TASK_MS)
        runs.append(time.perf_counter() - started)
    return min(runs)


Served = tuple[LoadResult, float] | str  # (load result, ok requests per CPU-second) or why not


def http_rates(cluster: DaskProcesses, settings: Settings) -> dict[str, Served]:
    """`/slow` served by `tornado-run --workers auto`, its CPU task in each web worker's
    process pool or on the dask cluster, under a closed-loop load (wrk, else ab). CPU-seconds
    count the server's process tree, plus the dask processes for the dask pool."""
    results: dict[str, Served] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "dask.toml"
        config.write_text(f'[pools.cluster]\nkind = "dask"\naddress = "{cluster.address}"\n')
        apps: dict[str, tuple[list[str], Callable[[], float]]] = {
            "process pool": (["examples.bench.apps:process_application"], lambda: 0.0),
            "dask pool": (
                ["examples.bench.dask_app:application", "--config", str(config)],
                cluster.cpu_seconds,
            ),
        }
        for name, (args, extra_cpu) in apps.items():
            port = free_port()
            bind = ["--bind", f"127.0.0.1:{port}"]
            command = [*tornado_run_command(), *args, "--workers", "auto", *bind]
            server = Server(name, command, port, ready_path="/fast")
            try:
                with running(server):
                    url = f"http://127.0.0.1:{port}/slow"
                    closed_loop(url, settings.http_connections, 1)  # warm up pools and client
                    used = server.cpu_seconds() + extra_cpu()
                    load = closed_loop(
                        url, settings.http_connections, settings.http_seconds, timeout=30
                    )
                    cpu = server.cpu_seconds() + extra_cpu() - used
                    ok = load.ok_per_second * load.seconds
                    results[name] = (load, ok / max(cpu, 1e-9))
            except Skip as why:
                results[name] = str(why)
    return results


def table(results: dict[str, dict[str, float]], settings: Settings, task: float) -> str:
    rows = [
        ("round trip, 1 call at a time, median (µs)", "rt_median", 0),
        ("round trip, 1 call at a time, p99 (µs)", "rt_p99", 0),
        (f"trivial calls/s, {settings.burst_concurrency} callers", "burst", 0),
        ("CPU ms per trivial call, all processes", "burst_cpu_ms", 2),
        (f"burn({CPU_TASK_MS} ms) calls/s, {settings.cpu_concurrency} callers", "cpu", 1),
        (f"burn({CPU_TASK_MS} ms) calls per CPU-second, all processes", "cpu_per_cpu_s", 1),
    ]
    local, dask = results["process pool"], results["dask pool"]
    lines = [
        f"| measure ({POOL_PROCESSES} processes each) | process pool | dask pool | dask/process |",
        "|---|---:|---:|---:|",
    ]
    for label, key, digits in rows:
        ratio = dask[key] / local[key] if local[key] else float("nan")
        cells = f"{local[key]:.{digits}f} | {dask[key]:.{digits}f} | {ratio:.2f}"
        lines.append(f"| {label} | {cells} |")
    ideal = POOL_PROCESSES / task
    label = f"burn({CPU_TASK_MS} ms) calls/s if {POOL_PROCESSES} cores did only this"
    lines.append(f"| {label} | {ideal:.1f} | {ideal:.1f} | |")
    return "\n".join(lines)


def http_table(results: dict[str, Served], settings: Settings) -> str:
    lines = [
        f"| `/slow` via tornado-run --workers auto, {settings.http_connections} connections "
        "| ok req/s | ok req per CPU-second | non-2xx + errors | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        if isinstance(result, str):
            lines.append(f"| {name} | skipped: {result} | | | |")
            continue
        load, per_cpu = result
        p99 = f"{load.p99_ms:.0f}" if load.p99_ms is not None else "n/a"
        failed = load.non_2xx + load.errors
        lines.append(f"| {name} | {load.ok_per_second:.1f} | {per_cpu:.1f} | {failed} | {p99} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 20 s)")
    settings = QUICK if parser.parse_args(argv).quick else FULL
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("dask_bench needs the dask extra: pip install 'tornado-run[dask]'", file=sys.stderr)
        return 2
    task = task_seconds()
    with dask_cluster(POOL_PROCESSES) as cluster:
        results = asyncio.run(measure_both(cluster.address, settings))
        served = http_rates(cluster, settings)
    print(f"{platform.python_version()} on {os.cpu_count()} CPUs, {platform.machine()}\n")
    print(table(results, settings, task))
    print()
    print(http_table(served, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
