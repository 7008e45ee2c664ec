"""The Dispatcher the process pools and the CPU tier share: replacing every process without
failing a call, withdrawn calls that never run, draining, crash loops reported instead of
retried forever, and a zygote that dies taking its pool processes with it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from runner_support import pid_exited
from tornado_run.decorators import WorkerCrashed
from tornado_run.decorators.pools.offload import child, wire
from tornado_run.decorators.pools.offload.dispatcher import Call, Dispatcher, StartFailure
from tornado_run.decorators.pools.offload.zygote import Zygote


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def mark(path: str) -> None:
    Path(path).write_text("ran")


def die_at_start() -> None:
    os._exit(4)


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    started = Zygote.start("forkserver")
    yield started
    started.close()
    assert pid_exited(started.pid)


def submit(dispatcher: Dispatcher, fn: Callable[..., Any], *args: Any, timeout: float = 0) -> Call:
    frame = wire.encode_call(fn, args, {}).frame(wire.CALL)
    return dispatcher.submit(frame, timeout=timeout, label=f"{fn.__name__}()")


async def result(call: Call) -> Any:
    return wire.decode_reply(await call.future)


def run(zygote: Zygote, main: Callable[[Zygote], Awaitable[Any]]) -> Any:
    return asyncio.run(main(zygote))


def test_replace_all_replaces_every_process_and_fails_no_call(zygote: Zygote) -> None:
    async def main(zygote: Zygote) -> tuple[set[int], list[int], set[int]]:
        dispatcher = Dispatcher("hup", 2, zygote)
        both = [submit(dispatcher, pid_after, 0.1) for _ in range(2)]
        before = {await result(call) for call in both}
        assert len(before) == 2
        busy = [submit(dispatcher, pid_after, 0.3) for _ in range(4)]  # 2 running, 2 queued
        await asyncio.sleep(0.1)
        dispatcher.replace_all()
        finished = [await result(call) for call in busy]
        after = {await result(submit(dispatcher, pid_after, 0)) for _ in range(6)}
        assert await dispatcher.drain(1.0)
        dispatcher.close()
        return before, finished, after

    before, finished, after = run(zygote, main)
    assert len(finished) == 4  # every call answered, none failed
    assert set(finished[:2]) <= before  # the running calls finished in their old processes
    assert not after & before  # and then every process was a new one


def test_a_withdrawn_queued_call_never_runs(zygote: Zygote, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    async def main(zygote: Zygote) -> bool:
        dispatcher = Dispatcher("cancel", 1, zygote)
        running = submit(dispatcher, pid_after, 0.2)
        queued = submit(dispatcher, mark, str(marker))
        await asyncio.sleep(0.05)
        assert not queued.running
        withdrawn = dispatcher.cancel(queued)
        await result(running)
        await result(submit(dispatcher, pid_after, 0))  # the process is free and serving
        dispatcher.close()
        return withdrawn and queued.future.cancelled()

    assert run(zygote, main)
    assert not marker.exists()


def test_cancel_with_kill_stops_a_running_call_and_the_pool_serves_on(zygote: Zygote) -> None:
    async def main(zygote: Zygote) -> tuple[bool, int, int]:
        dispatcher = Dispatcher("kill", 1, zygote)
        first = await result(submit(dispatcher, pid_after, 0))
        slow = submit(dispatcher, pid_after, 30)
        await asyncio.sleep(0.1)
        killed = dispatcher.cancel(slow, kill=True)
        second = await result(submit(dispatcher, pid_after, 0))
        dispatcher.close()
        return killed, first, second

    killed, first, second = run(zygote, main)
    assert killed and first != second
    deadline = time.monotonic() + 5
    while psutil.pid_exists(first) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not psutil.pid_exists(first)


def test_drain_reports_whether_the_calls_finished_in_time(zygote: Zygote) -> None:
    async def main(zygote: Zygote) -> tuple[bool, bool]:
        dispatcher = Dispatcher("drain", 1, zygote)
        call = submit(dispatcher, pid_after, 0.5)
        early = await dispatcher.drain(0.05)
        late = await dispatcher.drain(5.0)
        await result(call)
        dispatcher.close()
        return early, late

    assert run(zygote, main) == (False, True)


def test_processes_dying_at_start_are_a_crash_loop_reported_not_retried(zygote: Zygote) -> None:
    reports: list[StartFailure] = []

    async def main(zygote: Zygote) -> tuple[BaseException | None, int]:
        init = child.init_blob(die_at_start, ())
        dispatcher = Dispatcher("loop", 1, zygote, init=init, on_start_failure=reports.append)
        dispatcher.start()
        await asyncio.sleep(3)
        spawned = dispatcher.stats()["spawned"]
        await asyncio.sleep(1)
        assert dispatcher.stats()["spawned"] == spawned  # stopped forking
        call = submit(dispatcher, pid_after, 0)  # a new call tries again, and fails
        try:
            await result(call)
        except WorkerCrashed as error:
            failure: BaseException | None = error
        else:
            failure = None
        dispatcher.close()
        return failure, spawned

    failure, spawned = run(zygote, main)
    assert reports and "die as they start" in str(reports[0])
    assert spawned <= 4
    assert isinstance(failure, WorkerCrashed) and "exit code 4" in str(failure)


def test_a_killed_zygote_takes_its_pool_processes_and_fails_their_calls(zygote: Zygote) -> None:
    async def main(zygote: Zygote) -> tuple[int, BaseException]:
        dispatcher = Dispatcher("orphan", 1, zygote)
        pid = await result(submit(dispatcher, pid_after, 0))
        slow = submit(dispatcher, pid_after, 30)
        await asyncio.sleep(0.1)
        os.kill(zygote.pid, signal.SIGKILL)
        try:
            await result(slow)
        except WorkerCrashed as error:
            failure: BaseException = error
        dispatcher.close()
        return pid, failure

    pid, failure = run(zygote, main)
    assert isinstance(failure, WorkerCrashed)
    assert not zygote.alive
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not psutil.pid_exists(pid)


def test_a_forked_zygote_serves_calls_and_leaves_nothing_at_close() -> None:
    forked = Zygote.start("fork")  # the CPU tier's broker forks its zygote like this

    async def main(zygote: Zygote) -> tuple[int, int]:
        dispatcher = Dispatcher("forked", 1, zygote)
        pid = await result(submit(dispatcher, pid_after, 0))
        parent = psutil.Process(pid).ppid()
        dispatcher.close()
        return pid, parent

    pid, parent = run(forked, main)
    assert parent == forked.pid and psutil.Process(forked.pid).ppid() == os.getpid()
    forked.close()
    assert not psutil.pid_exists(forked.pid)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not psutil.pid_exists(pid)
