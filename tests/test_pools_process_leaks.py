"""Nothing leaks from a process pool: after 10,000 calls mixed with timeouts, pool processes
killed with SIGKILL, crashes and cancelled calls (large arguments in flight included), this
process's open fds and memfds are back where they started, and closing the pool leaves no
pool process or zygote behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
from decorators_support import process_alive
from tornado_run.decorators import TaskTimeout, WorkerCrashed, pools, unblock
from tornado_run.decorators.pools.offload import wire

CALLS = 10_000
BATCH = 200
MiB = 1 << 20

pools.configure("leaky", kind="process", size=2, max_pending=BATCH + 16)
pools.configure("warm-up", kind="process", size=1)


@unblock(pool="leaky")
def double(x: int) -> int:
    return 2 * x


@unblock(pool="leaky")
def pids() -> tuple[int, int]:
    return os.getpid(), os.getppid()


@unblock(pool="leaky")
def size_of(blob: bytes) -> int:
    return len(blob)


@unblock(pool="leaky", timeout=0.05)
def overrun() -> None:
    time.sleep(5)


@unblock(pool="leaky")
def crash() -> None:
    os._exit(3)


@unblock(pool="leaky")
def sleep_here(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(30)


@unblock(pool="warm-up")
def nothing() -> None:
    return None


def memfds() -> int:
    """memfds this process holds: as fds, and as mappings (spares included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
    maps = Path("/proc/self/maps").read_text().splitlines()
    return count + sum("memfd:" in line for line in maps)


async def batch(seen: set[int], pid_file: Path) -> Counter[str]:
    """BATCH calls: trivial ones plus a timeout, a crash, a busy pool process SIGKILLed, a
    large argument and cancelled calls (queued ones, and one with a large argument)."""
    calls: list[asyncio.Future[Any]] = [asyncio.ensure_future(double(i)) for i in range(BATCH - 8)]
    calls.append(asyncio.ensure_future(overrun()))
    calls.append(asyncio.ensure_future(crash()))
    calls.append(asyncio.ensure_future(size_of(os.urandom(MiB))))
    pid_file.unlink(missing_ok=True)
    calls.append(asyncio.ensure_future(sleep_here(str(pid_file))))
    cancelled = [asyncio.ensure_future(double(-1)) for _ in range(3)]
    cancelled.append(asyncio.ensure_future(size_of(bytes(2 * MiB))))
    await asyncio.sleep(0)
    for call in cancelled:
        call.cancel()
    seen.update(await pids())
    outcomes: Counter[str] = Counter(ok=1)
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.001)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # from outside, as the OOM killer would
    for index, result in enumerate(await asyncio.gather(*calls, return_exceptions=True)):
        if isinstance(result, TaskTimeout):
            outcomes["timeout"] += 1
        elif isinstance(result, WorkerCrashed):
            outcomes["crashed"] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            assert result == (2 * index if index < BATCH - 8 else MiB), result
            outcomes["ok"] += 1
    for call in cancelled:
        assert call.cancelled()
    outcomes["cancelled"] += len(cancelled)
    return outcomes


@pytest.mark.timeout(120)
def test_ten_thousand_calls_with_faults_leave_no_fd_memfd_or_process_behind(
    tmp_path: Path,
) -> None:
    asyncio.run(nothing())  # multiprocessing's forkserver, shared by every pool, is up now
    pools.shutdown()
    fds_before, memfds_before = psutil.Process().num_fds(), memfds()
    seen: set[int] = set()

    async def main() -> tuple[Counter[str], int]:
        await double(1)  # the pool is up
        pool_fds = psutil.Process().num_fds()
        totals: Counter[str] = Counter()
        for _ in range(CALLS // BATCH):
            totals += await batch(seen, tmp_path / "busy.pid")
        await asyncio.sleep(0.2)  # exit reports of the last kills arrive
        assert [await double(i) for i in range(10)] == [2 * i for i in range(10)]
        spares = wire.spares.count()  # memfds read out and kept for the next large frame
        assert spares <= 2
        assert psutil.Process().num_fds() == pool_fds + spares  # nothing else held
        return totals, pool_fds

    started = time.monotonic()
    totals, _ = asyncio.run(main())
    assert sum(totals.values()) >= CALLS
    assert totals["timeout"] == CALLS // BATCH
    assert totals["crashed"] >= 2 * (CALLS // BATCH)  # the os._exit and the SIGKILLed calls
    assert totals["ok"] >= CALLS - 4 * (CALLS // BATCH) * 8  # kills fail only their own call
    stats = pools.stats()["leaky"]
    assert (stats["size"], stats["busy"], stats["queued"]) == (2, 0, 0)
    pools.shutdown()
    deadline = time.monotonic() + 10
    while any(process_alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in seen if process_alive(pid)], "pool processes or zygote left behind"
    assert psutil.Process().num_fds() == fds_before
    assert memfds() == memfds_before == 0
    assert time.monotonic() - started < 60
