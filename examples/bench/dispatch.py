"""Dispatch benchmark: round-trip microseconds per call of a trivial function, one call at a
time and 64 in flight.

Thread: @unblock against loop.run_in_executor and asyncio.to_thread on a ThreadPoolExecutor
of the same size (and @unblock(pool=that executor), which goes through the executor).
Process: @unblock(pool="process") against the stdlib ProcessPoolExecutor of the same size.
Each variant runs several rounds, interleaved; the best round counts (a shared machine only
ever adds noise). Wall time is the round trip; CPU is this process's CPU time per call (all
threads, not the pool's child processes), which noise from other processes barely moves.
Prints markdown tables; ratios < 1.0 mean faster than the baseline row.

    python examples/bench/dispatch.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from tornado_run.decorators import pools, unblock

IN_FLIGHT = 64
Call = Callable[[int], Awaitable[Any]]

# The default process queue (8 x size) would shed part of 64 concurrent calls; this measures
# dispatch, not admission, so admit them all.
pools.configure("process", kind="process", max_pending=IN_FLIGHT)


def noop(x: int) -> int:
    return x


@unblock
def unblock_thread(x: int) -> int:
    return x


@unblock(pool="process")
def unblock_process(x: int) -> int:
    return x


Figures = tuple[float, float]  # (wall µs per call, this process's CPU µs per call)


async def per_call_us(call: Call, calls: int, in_flight: int) -> Figures:
    """Wall and CPU microseconds per call when `in_flight` callers call back to back."""

    async def caller(count: int) -> None:
        for i in range(count):
            await call(i)

    share = max(1, calls // in_flight)
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller(share) for _ in range(in_flight)))
    total = share * in_flight
    return (time.perf_counter() - wall) * 1e6 / total, (time.process_time() - cpu) * 1e6 / total


async def best_of(
    variants: dict[str, Call], calls: int, in_flight: int, rounds: int
) -> dict[str, Figures]:
    best = dict.fromkeys(variants, (float("inf"), float("inf")))
    for call in variants.values():  # warm up: threads started, processes imported
        await per_call_us(call, min(calls, 200), in_flight)
    for _ in range(rounds):
        for name, call in variants.items():
            wall, cpu = await per_call_us(call, calls, in_flight)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def table(title: str, baseline: str, rows: dict[str, dict[str, Figures]]) -> str:
    modes = list(rows)
    header = " | ".join(f"{m}: wall µs | ratio | CPU µs | ratio" for m in modes)
    lines = [f"| {title} | {header} |", "|---|" + "---:|---:|---:|---:|" * len(modes)]
    for name in rows[modes[0]]:
        cells = []
        for mode in modes:
            (wall, cpu), (base_wall, base_cpu) = rows[mode][name], rows[mode][baseline]
            cells.append(
                f"{wall:.1f} | {wall / base_wall:.2f}x | {cpu:.1f} | {cpu / base_cpu:.2f}x"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def thread_rows(calls: int, rounds: int) -> dict[str, dict[str, Figures]]:
    size = pools.get("thread").stats()["size"]
    executor = ThreadPoolExecutor(size)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(executor)  # asyncio.to_thread uses the loop's default executor
    via_executor = unblock(pool=executor)(noop)
    variants: dict[str, Call] = {
        "loop.run_in_executor": lambda x: loop.run_in_executor(executor, noop, x),
        "asyncio.to_thread": lambda x: asyncio.to_thread(noop, x),
        "@unblock (thread pool)": unblock_thread,
        "@unblock(pool=executor)": via_executor,
    }
    rows = {
        "sequential": await best_of(variants, calls, 1, rounds),
        f"{IN_FLIGHT} in flight": await best_of(variants, calls * 3, IN_FLIGHT, rounds),
    }
    executor.shutdown()
    return rows


async def process_rows(calls: int, rounds: int) -> dict[str, dict[str, Figures]]:
    size = pools.get("process").stats()["size"]
    context = multiprocessing.get_context("forkserver")
    executor = ProcessPoolExecutor(size, mp_context=context)
    loop = asyncio.get_running_loop()
    variants: dict[str, Call] = {
        "ProcessPoolExecutor": lambda x: loop.run_in_executor(executor, noop, x),
        '@unblock(pool="process")': unblock_process,
    }
    rows = {
        "sequential": await best_of(variants, calls, 1, rounds),
        f"{IN_FLIGHT} in flight": await best_of(variants, calls * 3, IN_FLIGHT, rounds),
    }
    executor.shutdown()
    return rows


async def main(quick: bool, rounds: int) -> None:
    thread_calls, process_calls = (2_000, 300) if quick else (20_000, 3_000)
    threads = await thread_rows(thread_calls, rounds)
    processes = await process_rows(process_calls, rounds)
    print(table("thread dispatch", "loop.run_in_executor", threads))
    print()
    print(table("process dispatch", "ProcessPoolExecutor", processes))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per variant (best counts)")
    options = parser.parse_args()
    try:
        asyncio.run(main(options.quick, options.rounds or (1 if options.quick else 5)))
    finally:
        pools.shutdown()
