"""The loop watchdog (--block-warn) and the stack dump the master asks for on heartbeat timeout."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from tornado.ioloop import IOLoop
from tornado_run.runner.worker.watchdog import (
    IDLE,
    STACK_DUMP_SIGNAL,
    LoopWatchdog,
    format_loop_stack,
    tick_for,
)


def cpu_bound_handler(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # BUSY-LINE
        pass


BUSY_LINE = next(
    n
    for n, line in enumerate(Path(__file__).read_text().splitlines(), 1)
    if line.endswith("# BUSY-LINE")
)


def run_loop_with(watchdog: LoopWatchdog, work: list[tuple[float, float]], total: float) -> None:
    """Run a fresh IOLoop for `total` seconds; at each (delay, seconds) block it that long."""
    loop = IOLoop(make_current=False)

    def setup() -> None:
        watchdog.start(loop)
        for delay, seconds in work:
            loop.call_later(delay, cpu_bound_handler, seconds)
        loop.call_later(total, loop.stop)

    loop.add_callback(setup)
    try:
        loop.start()
    finally:
        watchdog.stop()
        loop.close()


def test_blocked_loop_is_logged_once_with_handler_file_and_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tornado_run.watchdog")
    watchdog = LoopWatchdog(threshold=0.1)
    run_loop_with(watchdog, [(0.05, 0.3)], total=0.6)
    reports = [r.getMessage() for r in caplog.records if "blocked for" in r.getMessage()]
    assert len(reports) == 1, reports
    assert f'File "{__file__}", line {BUSY_LINE}, in cpu_bound_handler' in reports[0]
    stats = watchdog.stats()
    assert stats["blocked_episodes"] == 1
    assert stats["max_lag_ms"] >= 250
    assert stats["block_warn_ms"] == 100


def test_each_blocking_episode_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tornado_run.watchdog")
    watchdog = LoopWatchdog(threshold=0.1)
    run_loop_with(watchdog, [(0.05, 0.25), (0.5, 0.25)], total=0.9)
    assert watchdog.episodes == 2
    assert sum("blocked for" in r.getMessage() for r in caplog.records) == 2


def test_lag_is_measured_without_a_threshold(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tornado_run.watchdog")
    watchdog = LoopWatchdog(threshold=None)
    run_loop_with(watchdog, [(0.05, 0.3)], total=0.5)
    assert watchdog.stats()["max_lag_ms"] >= 200
    assert watchdog.episodes == 0
    assert not caplog.records


def test_a_loop_that_stays_blocked_is_reported_while_blocked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tornado_run.watchdog")
    watchdog = LoopWatchdog(threshold=0.05, still_blocked_after=0.2)
    run_loop_with(watchdog, [(0.02, 0.6)], total=0.8)
    still = [r.getMessage() for r in caplog.records if "still blocked" in r.getMessage()]
    assert len(still) == 1
    assert "cpu_bound_handler" in still[0]


def test_watchdog_thread_ends_on_stop() -> None:
    watchdog = LoopWatchdog(threshold=0.1)
    run_loop_with(watchdog, [], total=0.1)
    assert not [t for t in threading.enumerate() if t.name == "tornado-run-watchdog"]


def test_an_idle_loop_stack_is_recognised_as_idle() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        time.sleep(0.2)  # let it settle into its poller
        assert thread.ident is not None
        frame = sys._current_frames()[thread.ident]
        assert format_loop_stack(traceback.extract_stack(frame)) == IDLE
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_loop_stack_starts_below_the_event_loop_frames() -> None:
    def handler() -> str:
        return format_loop_stack(traceback.extract_stack())

    loop = asyncio.new_event_loop()
    try:
        text = loop.run_until_complete(_call_in_loop(handler))
    finally:
        loop.close()
    assert "in handler" in text
    assert "base_events.py" not in text and "run_until_complete" not in text


async def _call_in_loop(fn: Callable[[], str]) -> str:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(lambda: future.set_result(fn()))
    return await future


@pytest.mark.parametrize("bad", [0, -1.0])
def test_non_positive_threshold_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="block-warn"):
        LoopWatchdog(threshold=bad)


def test_tick_stays_within_bounds() -> None:
    assert tick_for(0.001) == 0.005
    assert tick_for(0.1) == 0.025
    assert tick_for(60) == 0.25


def test_stack_dump_signal_prints_every_thread_of_a_hung_process() -> None:
    script = textwrap.dedent(
        """
        import sys, threading, time
        from tornado_run.runner.worker.watchdog import install_stack_dump
        install_stack_dump()
        threading.Thread(target=time.sleep, args=(30,), name="side", daemon=True).start()
        def stuck_handler():
            time.sleep(30)
        print("ready", flush=True)
        stuck_handler()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        os.kill(proc.pid, STACK_DUMP_SIGNAL)
        time.sleep(0.5)
        assert proc.poll() is None, "the dump must not end the process"
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    assert "stuck_handler" in err
    assert err.count("hread 0x") >= 2  # "Current thread" and "Thread"
