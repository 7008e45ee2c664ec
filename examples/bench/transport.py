"""Transport benchmark: what a call costs on its way to a pool process and back.

Cases: a trivial call one at a time, 64 trivial calls in flight (2 processes), and a 1 MiB
and a 16 MiB argument echoed back (bytes, bytearray, memoryview, and a numpy array when numpy
is installed). Peers, all with 2 processes and side by side in one run: the stdlib
`ProcessPoolExecutor` (forkserver), pebble's `ProcessPool`, and `@unblock` on a process pool.
Thread rows: `@unblock` on its thread pool against `loop.run_in_executor` on a
`ThreadPoolExecutor` of the same size. Every case runs its peers in turn, round after round;
the median round counts. Neither peer can pickle a memoryview: their memoryview rows convert
it (`tobytes()` going, `memoryview()` coming back) as a caller of theirs must.

    python examples/bench/transport.py [--quick] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from tornado_run.decorators import pools, unblock

PROCESSES = 2
IN_FLIGHT = 64
MiB = 1 << 20
PEERS = ("ProcessPoolExecutor", "pebble", "tornado-run")
THREAD_PEERS = ("loop.run_in_executor", "@unblock (thread)")
Call = Callable[[Any], Awaitable[Any]]

pools.configure("bench-transport", kind="process", size=PROCESSES, max_pending=IN_FLIGHT)
pools.configure("bench-threads", kind="thread", size=PROCESSES, max_pending=IN_FLIGHT)


def echo(value: Any) -> Any:
    return value


def echo_converted(value: Any) -> Any:
    """The peers' memoryview echo: they get bytes and return bytes."""
    return value


@unblock(pool="bench-transport")
def echo_offloaded(value: Any) -> Any:
    return value


@unblock(pool="bench-threads")
def echo_threaded(value: Any) -> Any:
    return value


def payloads(size: int) -> dict[str, Any]:
    """The echo cases of `size` bytes: name -> value."""
    data = bytes(range(256)) * (size // 256)
    cases: dict[str, Any] = {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(bytearray(data)),
    }
    try:
        import numpy

        cases["numpy"] = numpy.frombuffer(data, dtype=numpy.float64).copy()
    except ImportError:
        pass
    return cases


async def per_call_us(call: Call, value: Any, calls: int, in_flight: int) -> float:
    async def caller(count: int) -> None:
        for _ in range(count):
            await call(value)

    share = max(1, calls // in_flight)
    started = time.perf_counter()
    await asyncio.gather(*(caller(share) for _ in range(in_flight)))
    return (time.perf_counter() - started) * 1e6 / (share * in_flight)


def peer_calls(stdlib: ProcessPoolExecutor, pebble_pool: Any, memoryviews: bool) -> dict[str, Call]:
    loop = asyncio.get_running_loop()

    def via_pebble(value: Any) -> Awaitable[Any]:
        return asyncio.wrap_future(pebble_pool.schedule(echo, args=(value,)))

    if memoryviews:

        async def stdlib_mv(value: memoryview) -> memoryview:
            return memoryview(await loop.run_in_executor(stdlib, echo, value.tobytes()))

        async def pebble_mv(value: memoryview) -> memoryview:
            return memoryview(await via_pebble(value.tobytes()))

        return {
            "ProcessPoolExecutor": stdlib_mv,
            "pebble": pebble_mv,
            "tornado-run": echo_offloaded,
        }
    return {
        "ProcessPoolExecutor": lambda value: loop.run_in_executor(stdlib, echo, value),
        "pebble": via_pebble,
        "tornado-run": echo_offloaded,
    }


async def measure(quick: bool, rounds: int) -> list[dict[str, Any]]:
    import pebble

    context = multiprocessing.get_context("forkserver")
    stdlib = ProcessPoolExecutor(PROCESSES, mp_context=context)
    pebble_pool = pebble.ProcessPool(max_workers=PROCESSES, context=context)
    trivial = 300 if quick else 3000
    cases: list[tuple[str, Any, int, int]] = [
        ("trivial call, one at a time", 0, trivial, 1),
        (f"trivial calls, {IN_FLIGHT} in flight", 0, trivial * 2, IN_FLIGHT),
    ]
    for size, count in ((MiB, 10 if quick else 60), (16 * MiB, 3 if quick else 12)):
        for kind, value in payloads(size).items():
            cases.append((f"{size // MiB} MiB {kind} echo", value, count, 1))
    rows: list[dict[str, Any]] = []
    try:
        for name, value, calls, in_flight in cases:
            variants = peer_calls(stdlib, pebble_pool, isinstance(value, memoryview))
            for call in variants.values():  # warm up: processes started, modules imported
                await per_call_us(call, value, min(calls, 20), in_flight)
            samples: dict[str, list[float]] = {peer: [] for peer in variants}
            for _ in range(rounds):
                for peer, call in variants.items():
                    samples[peer].append(await per_call_us(call, value, calls, in_flight))
            rows.append({"case": name, **{p: statistics.median(s) for p, s in samples.items()}})
        rows += await thread_rows(quick, rounds)
    finally:
        stdlib.shutdown()
        pebble_pool.stop()  # type: ignore[no-untyped-call]
        pebble_pool.join()
    return rows


async def thread_rows(quick: bool, rounds: int) -> list[dict[str, Any]]:
    executor = ThreadPoolExecutor(PROCESSES)
    loop = asyncio.get_running_loop()
    variants: dict[str, Call] = {
        "loop.run_in_executor": lambda value: loop.run_in_executor(executor, echo, value),
        "@unblock (thread)": echo_threaded,
    }
    calls = 2000 if quick else 20000
    rows = []
    for name, in_flight in (("thread: one at a time", 1), (f"thread: {IN_FLIGHT} in flight", 64)):
        samples: dict[str, list[float]] = {peer: [] for peer in variants}
        for call in variants.values():
            await per_call_us(call, 0, 200, in_flight)
        for _ in range(rounds):
            for peer, call in variants.items():
                samples[peer].append(await per_call_us(call, 0, calls, in_flight))
        rows.append({"case": name, **{p: statistics.median(s) for p, s in samples.items()}})
    executor.shutdown()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | ProcessPoolExecutor µs | pebble µs | tornado-run µs | vs stdlib | vs pebble |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "tornado-run" not in row:
            continue
        ours, stdlib, peb = row["tornado-run"], row["ProcessPoolExecutor"], row["pebble"]
        lines.append(
            f"| {row['case']} | {stdlib:,.0f} | {peb:,.0f} | {ours:,.0f} | "
            f"{ours / stdlib:.2f}x | {ours / peb:.2f}x |"
        )
    lines += ["", "| case | loop.run_in_executor µs | @unblock (thread) µs | ratio |"]
    lines.append("|---|---:|---:|---:|")
    for row in rows:
        if "loop.run_in_executor" in row:
            base, ours = row["loop.run_in_executor"], row["@unblock (thread)"]
            lines.append(f"| {row['case']} | {base:.1f} | {ours:.1f} | {ours / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (median)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    options = parser.parse_args()
    rounds = options.rounds or (1 if options.quick else 5)
    try:
        rows = asyncio.run(measure(options.quick, rounds))
    finally:
        pools.shutdown()
    print(json.dumps(rows) if options.json else table(rows))


if __name__ == "__main__":
    main()
