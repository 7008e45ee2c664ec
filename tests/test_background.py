"""background(): fire-and-forget jobs whose errors are logged, and that graceful shutdown
waits for (through the runner's lifecycle hooks) up to its deadline."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from decorators_support import run
from tornado_run.decorators import background, unblock
from tornado_run.decorators.jobs import stats
from tornado_run.runner import lifecycle


async def explode() -> None:
    await asyncio.sleep(0)
    raise ValueError("job went wrong")


def test_a_failing_job_is_logged_with_its_traceback_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed_before = stats()["failed"]

    async def main() -> None:
        task = background(explode)
        await asyncio.wait([task])

    with caplog.at_level(logging.ERROR, logger="tornado_run.background"):
        run(main)
    records = [r for r in caplog.records if "explode" in r.getMessage()]
    assert records and records[0].exc_info is not None
    assert "job went wrong" in str(records[0].exc_info[1])
    assert stats()["failed"] == failed_before + 1


def test_a_blocking_function_runs_in_the_named_pool() -> None:
    def who(prefix: str) -> str:
        return prefix + threading.current_thread().name

    async def main() -> str:
        return await background(who, "ran in ", pool="thread")

    assert run(main).startswith("ran in tornado-run-thread")


def test_an_unblocked_function_runs_without_naming_a_pool() -> None:
    @unblock
    def blocking_sum(a: int, b: int) -> int:
        return a + b

    async def main() -> int:
        return await background(blocking_sum, 2, 3)

    assert run(main) == 5


def test_graceful_stop_waits_for_a_pending_job() -> None:
    finished: list[str] = []

    async def slow_job() -> None:
        await asyncio.sleep(0.3)
        finished.append("job")

    async def main() -> None:
        background(slow_job)
        await lifecycle.run_shutdown_hooks(10)
        finished.append("hooks")

    run(main)
    assert finished == ["job", "hooks"]


def test_graceful_stop_abandons_a_job_past_the_deadline_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = []

    async def endless() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> float:
        background(endless)
        begin = time.monotonic()
        await lifecycle.run_shutdown_hooks(0.3)
        elapsed = time.monotonic() - begin
        await asyncio.sleep(0)  # let the cancellation land
        return elapsed

    abandoned_before = stats()["abandoned"]
    with caplog.at_level(logging.WARNING, logger="tornado_run.background"):
        elapsed = run(main)
    assert elapsed < 5
    assert cancelled == [True]
    assert stats()["abandoned"] == abandoned_before + 1
    assert any("abandoning background job" in r.getMessage() for r in caplog.records)
