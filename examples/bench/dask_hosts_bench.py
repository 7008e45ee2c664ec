"""A 20 ms CPU task (`burn(20)`) through three pools of 2 single-threaded processes each: the
local process pool, a dask `LocalCluster`, and a dask cluster on test hosts (a scheduler and
2 workers, each in its own network namespace on a bridge, reached over veth links). Round trip
one call at a time (and of an empty call: the pool's own cost), and throughput with 8
callers. Prints a markdown table.

    sudo python -m examples.bench.dask_hosts_bench [--quick]

Run from the repository root with the dask extra (`pip install -e '.[dask]'`); the hosts need
root and iproute2 (else that column is skipped with the reason). All three run on this one
machine, so the figures show what the hops to a scheduler and a worker cost, not what more
machines would add: that is the core count of the dask hosts times the calls/s per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tornado_run.decorators.pools.api import Pool, PoolSpec
from tornado_run.decorators.pools.dask import create_pool
from tornado_run.decorators.pools.process import ProcessPool

from examples.bench.dask_bench import CPU_TASK_MS, POOL_PROCESSES, cpu_rate, task_seconds
from examples.bench.harness import REPO_ROOT
from examples.cpu import burn

CALLERS = 8
MAX_PENDING = 1000  # the bench measures speed, not shedding


@dataclass(frozen=True)
class Settings:
    round_trips: int
    seconds: float


QUICK = Settings(round_trips=20, seconds=2)
FULL = Settings(round_trips=200, seconds=15)
Figures = dict[str, float]


async def round_trips_ms(pool: Pool, calls: int, ms: int) -> list[float]:
    """Milliseconds per `burn(ms)` call, one call at a time."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await pool.run(burn, (ms,), {}, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(pool: Pool, settings: Settings) -> Figures:
    await pool.run(burn, (1,), {}, timeout=60)  # start processes, connect, import examples.cpu
    samples = await round_trips_ms(pool, settings.round_trips, CPU_TASK_MS)
    empty = await round_trips_ms(pool, settings.round_trips, 0)
    quantiles = statistics.quantiles(samples, n=100) if len(samples) > 1 else samples * 99
    return {
        "rt_median": statistics.median(samples),
        "rt_p99": quantiles[98],
        "empty_median": statistics.median(empty),
        "rate": await cpu_rate(pool, settings.seconds, CALLERS),
    }


def dask_pool(address: str) -> Pool:
    spec = PoolSpec(
        name="cluster", kind="dask", max_pending=MAX_PENDING, options={"address": address}
    )
    return create_pool(spec)


@contextlib.asynccontextmanager
async def process_pool() -> AsyncIterator[Pool]:
    spec = PoolSpec(name="process", kind="process", size=POOL_PROCESSES, max_pending=MAX_PENDING)
    yield ProcessPool(spec)


@contextlib.asynccontextmanager
async def local_cluster() -> AsyncIterator[Pool]:
    from distributed import LocalCluster

    async with LocalCluster(
        n_workers=POOL_PROCESSES,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
        asynchronous=True,
    ) as cluster:
        yield dask_pool(cluster.scheduler_address)


@contextlib.asynccontextmanager
async def host_cluster() -> AsyncIterator[Pool]:
    from examples.bench import dask_hosts, netns

    why = netns.unavailable()
    if why is not None:
        raise Unavailable(why)
    with dask_hosts.host_cluster(POOL_PROCESSES, pythonpath=[REPO_ROOT], settings={}) as cluster:
        yield dask_pool(cluster.address)


class Unavailable(Exception):
    """A column that cannot run here; its message is the one-line reason."""


POOLS: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Pool]]] = {
    "process pool": process_pool,
    "LocalCluster": local_cluster,
    "dask on 3 hosts (netns)": host_cluster,
}


async def measure_all(settings: Settings) -> dict[str, Figures | str]:
    results: dict[str, Figures | str] = {}
    for name, make in POOLS.items():
        try:
            async with make() as pool:
                try:
                    results[name] = await measure(pool, settings)
                finally:
                    await pool.aclose(10)
        except Unavailable as why:
            results[name] = f"skipped: {why}"
    return results


def table(results: dict[str, Figures | str], task_ms: float) -> str:
    names = list(results)
    lines = [
        f"| burn({CPU_TASK_MS} ms), {POOL_PROCESSES} processes each | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    rows: list[tuple[str, Callable[[Figures], float], int]] = [
        ("round trip, 1 call at a time, median (ms)", lambda f: f["rt_median"], 1),
        ("round trip, 1 call at a time, p99 (ms)", lambda f: f["rt_p99"], 1),
        ("round trip of an empty call (burn(0)), median (ms)", lambda f: f["empty_median"], 2),
        (f"calls/s, {CALLERS} callers", lambda f: f["rate"], 1),
    ]
    for label, value, digits in rows:
        cells = [
            result if isinstance(result, str) else f"{value(result):.{digits}f}"
            for result in results.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ideal = POOL_PROCESSES * 1000 / task_ms
    label = f"calls/s if {POOL_PROCESSES} cores did only this"
    lines.append(f"| {label} | " + " | ".join([f"{ideal:.1f}"] * len(names)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per pool")
    settings = QUICK if parser.parse_args(argv).quick else FULL
    try:
        import distributed  # noqa: F401
    except ImportError:
        print(
            "dask_hosts_bench needs the dask extra: pip install 'tornado-run[dask]'",
            file=sys.stderr,
        )
        return 2
    task_ms = task_seconds() * 1000
    results: dict[str, Any] = asyncio.run(measure_all(settings))
    print(f"{platform.python_version()} on {os.cpu_count()} CPUs, {platform.machine()};")
    print(f"burn({CPU_TASK_MS}) takes {task_ms:.1f} ms here\n")
    print(table(results, task_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
