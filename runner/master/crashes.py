"""How workers end: a readable cause for the log, crash-loop detection, and the last
SIGKILL-and-reap when the master exits."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import MutableMapping
from typing import TypeVar

Record = TypeVar("Record")

CRASH_WINDOW = 5.0
"""A worker dying this soon after it started counts towards a crash loop."""
CRASH_LIMIT = 5
"""This many such deaths in a row make a crash loop."""
CRASH_MEMORY = 60.0
"""A fast death this long after the previous one starts a new count."""


def describe_exit(status: int) -> str:
    """'exited with code N' or 'was killed by SIGNAME' for a waitpid status (the master's log)."""
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"


def describe_exitcode(exitcode: int | None) -> str:
    """'exit code 3', 'signal SIGKILL' or 'an unknown exit status' (None) for an exit code as
    multiprocessing reports it (negative: killed by that signal)."""
    if exitcode is None:
        return "an unknown exit status"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    name = _signal_name(-exitcode)
    return name if name.startswith("signal ") else f"signal {name}"


def _signal_name(signum: int) -> str:
    """'SIGKILL', or 'signal N' for a number Python has no name for."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class CrashLoop:
    """Counts workers dying within `CRASH_WINDOW` of their start, in a row."""

    def __init__(self) -> None:
        self.fast_deaths = 0
        self._last_fast_death = 0.0

    def record(self, born: float) -> bool:
        """Record an unexpected death of a worker started at monotonic time `born`; True when
        this makes a crash loop."""
        now = time.monotonic()
        fast = now - born <= CRASH_WINDOW
        if not fast or now - self._last_fast_death > CRASH_MEMORY:
            self.fast_deaths = 0
        if fast:
            self.fast_deaths += 1
            self._last_fast_death = now
        return self.fast_deaths >= CRASH_LIMIT


def kill_and_reap(workers: MutableMapping[int, Record], grace: float) -> None:
    """SIGKILL every pid in `workers` and reap them (removing each), for up to `grace` s."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while workers and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            workers.pop(pid, None)
        else:
            time.sleep(0.02)
