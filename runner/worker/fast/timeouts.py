"""Idle and body timeouts for every connection of a server with one periodic sweep: each
connection records a deadline when it changes state (two float stores per request), which
costs nothing like a timer per request does."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from .state import current_loop


class HasDeadline(Protocol):
    deadline: float
    """`time.monotonic()` value after which the connection is closed; inf for none."""

    def timed_out(self) -> None:
        """Close the connection: its deadline has passed."""


def sweep_interval(*timeouts: float | None) -> float:
    """A quarter of the shortest timeout, between 0.05 and 1 second: a connection is closed
    at most that long after its deadline."""
    shortest = min((t for t in timeouts if t), default=4.0)
    return min(1.0, max(0.05, shortest / 4))


class TimeoutSweep:
    """Close the connections whose deadline has passed, every `interval` seconds."""

    def __init__(self, connections: set[HasDeadline], interval: float) -> None:
        self.connections = connections
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = current_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = current_loop().call_later(self.interval, self._tick)
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.timed_out()
