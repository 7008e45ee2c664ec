"""Notice a blocked event loop from inside the worker, and dump stacks on the master's request.

`LoopWatchdog` has the loop stamp a deadline from a `call_later` chain (one cheap callback per
tick) and a daemon thread that compares the clock with that deadline. When the loop is late by
more than the threshold, the thread captures the loop thread's Python stack; when the loop
turns again, the loop logs one warning for the whole episode: its duration and where the loop
was stuck. Loop lag (how late the tick ran) is measured on every tick, so the maximum lag is
known even without the thread.

`install_stack_dump` makes the worker print every thread's stack to the log when the master
sends `STACK_DUMP_SIGNAL` (faulthandler runs in the C signal handler, so it works while Python
code is stuck in `time.sleep` or a C call).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any, TextIO

from tornado.ioloop import IOLoop

log = logging.getLogger("tornado_run.watchdog")

STACK_DUMP_SIGNAL = signal.SIGUSR2
"""Signal the master sends a worker that missed its heartbeat, just before killing it."""

MIN_TICK = 0.005
MAX_TICK = 0.25
LAG_ONLY_THRESHOLD = 0.2
"""Without --block-warn the loop still ticks (every 50 ms) so status can show its max lag."""


def install_stack_dump(file: TextIO | None = None, signum: int = STACK_DUMP_SIGNAL) -> None:
    """Make `signum` print every thread's Python stack to `file` (default: stderr, the log).

    The process keeps running afterwards; the master kills it separately.
    """
    faulthandler.register(signum, file=file or sys.stderr, all_threads=True, chain=False)


def tick_for(threshold: float) -> float:
    """Interval of the stamping callback for a block threshold of `threshold` seconds."""
    return min(MAX_TICK, max(MIN_TICK, threshold / 4))


class LoopWatchdog:
    """Measure the lag of one IOLoop and report episodes where it stops turning.

    `threshold` is in seconds; None measures lag only (no thread, no reports). Call `start`
    from the loop's thread once the loop exists, `stop` from the same thread.
    """

    def __init__(self, threshold: float | None, still_blocked_after: float | None = None) -> None:
        if threshold is not None and threshold <= 0:
            raise ValueError(f"block-warn threshold must be > 0 seconds, got {threshold!r}")
        self.threshold = threshold
        self.tick = tick_for(threshold if threshold is not None else LAG_ONLY_THRESHOLD)
        # A loop that never turns again would never report; say so once after this long.
        self.still_blocked_after = still_blocked_after or max(1.0, 10 * (threshold or 1.0))
        self.episodes = 0
        self.max_lag = 0.0
        self._next_due = 0.0
        self._episode_stack: str | None = None
        self._episode_reported_long = False
        self._loop: IOLoop | None = None
        self._loop_thread_id = 0
        self._handle: object | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, loop: IOLoop | None = None) -> None:
        """Begin stamping on `loop` (default: the current one) and start the watching thread."""
        self._loop = loop or IOLoop.current()
        self._loop_thread_id = threading.get_ident()
        self._next_due = time.monotonic() + self.tick
        self._handle = self._loop.call_later(self.tick, self._on_tick)
        if self.threshold is not None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="tornado-run-watchdog", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop stamping and end the thread (returns within one tick)."""
        self._stop.set()
        if self._loop is not None and self._handle is not None:
            self._loop.remove_timeout(self._handle)
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=2 * MAX_TICK + 1)
            self._thread = None

    def stats(self) -> dict[str, Any]:
        """Figures for status: episodes over the threshold, maximum and current lag in ms."""
        current = max(0.0, time.monotonic() - self._next_due)
        return {
            "blocked_episodes": self.episodes,
            "max_lag_ms": round(max(self.max_lag, current) * 1000, 1),
            "current_lag_ms": round(current * 1000, 1),
            "block_warn_ms": None if self.threshold is None else round(self.threshold * 1000),
        }

    def _on_tick(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._next_due)
        self.max_lag = max(self.max_lag, lag)
        if self.threshold is not None and lag >= self.threshold:
            with self._lock:
                stack, self._episode_stack = self._episode_stack, None
                self._episode_reported_long = False
            if stack != IDLE:  # a starved but idle loop is no handler's doing
                self.episodes += 1
            self._report_episode(lag, stack)
        self._next_due = now + self.tick
        assert self._loop is not None
        self._handle = self._loop.call_later(self.tick, self._on_tick)

    def _report_episode(self, lag: float, stack: str | None) -> None:
        where = stack or "  (stack not captured: the loop turned before the watchdog looked)\n"
        log.warning(
            "event loop blocked for %.0f ms (block-warn %.0f ms); the loop thread was at:\n%s",
            lag * 1000,
            (self.threshold or 0) * 1000,
            where.rstrip("\n"),
        )

    def _watch(self) -> None:
        assert self.threshold is not None
        in_episode = max(MIN_TICK, self.threshold / 4)
        delay = self.threshold
        # Sleep until the loop would be late by the threshold, not at the tick rate: each
        # wake-up takes the GIL from a busy loop thread.
        while not self._stop.wait(delay):
            lag = time.monotonic() - self._next_due
            if lag < self.threshold:
                delay = max(MIN_TICK, self.threshold - lag)
                continue
            delay = in_episode
            with self._lock:
                if self._episode_stack is None:
                    self._episode_stack = self._loop_stack()
                report_long = lag >= self.still_blocked_after and not self._episode_reported_long
                if report_long:
                    self._episode_reported_long = True
                    stack = self._episode_stack
            if report_long:
                log.warning(
                    "event loop still blocked after %.1f s; the loop thread is at:\n%s",
                    lag,
                    (stack or "").rstrip("\n"),
                )

    def _loop_stack(self) -> str:
        frame: FrameType | None = sys._current_frames().get(self._loop_thread_id)
        if frame is None:
            return "  (loop thread not found)\n"
        return format_loop_stack(traceback.extract_stack(frame))


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
IDLE = "  (idle, waiting for I/O: the process did not get the CPU in time)\n"


def format_loop_stack(frames: traceback.StackSummary) -> str:
    """The frames below the event loop's own (the callback and what it called), or `IDLE`
    when the loop thread was waiting in its poller."""
    last_loop_frame = -1
    for index, entry in enumerate(frames):
        if entry.filename.startswith(_ASYNCIO_DIR):
            last_loop_frame = index
    inner = frames[last_loop_frame + 1 :]
    if not inner or os.path.basename(inner[-1].filename) == "selectors.py":
        return IDLE
    return "".join(traceback.StackSummary.from_list(list(inner)).format())
