"""Bounded admission and the counters every built-in pool reports.

All methods run on the IOLoop thread of the pool's process, so plain integers suffice.
"""

from __future__ import annotations

import time

from ..errors import Overloaded
from .api import PoolSpec, PoolStats

_RATE_WINDOW = 5.0  # seconds of completions that the drain-rate estimate remembers


class Admission:
    """Admits at most `size + max_pending` calls at once and counts what happens to them."""

    def __init__(self, spec: PoolSpec, kind: str, size: int, max_pending: int) -> None:
        self.spec = spec
        self.kind = kind
        self.size = size
        self.max_pending = max_pending
        self.in_flight = 0
        self.completed = 0
        self.failed = 0
        self.timed_out = 0
        self.crashed = 0
        self.abandoned = 0
        self.shed = 0
        self._rate = 0.0  # completions per second, decaying average
        self._rate_stamp = time.monotonic()

    def admit(self) -> None:
        """Count one more call in, or raise `Overloaded` when the queue is full."""
        if self.in_flight >= self.size + self.max_pending:
            self.shed += 1
            raise Overloaded(
                f"pool {self.spec.name!r} is full: {self.in_flight} calls admitted "
                f"(size {self.size} + max_pending {self.max_pending})",
                retry_after=self.retry_after(),
            )
        self.in_flight += 1

    def release(self) -> None:
        """Count one admitted call out (answered, failed, timed out or cancelled)."""
        self.in_flight -= 1
        now = time.monotonic()
        elapsed = now - self._rate_stamp
        self._rate_stamp = now
        # Exponentially decaying event rate: each release adds one event, older ones fade.
        decay = pow(0.5, elapsed / _RATE_WINDOW)
        self._rate = self._rate * decay + (1.0 - decay) / max(elapsed, 1e-3)

    def retry_after(self) -> float:
        """Seconds until the current queue has likely drained, from the observed rate."""
        queued = max(0, self.in_flight - self.size) + 1
        if self._rate <= 0.0:
            return 1.0
        return min(60.0, queued / self._rate)

    def stats(self) -> PoolStats:
        busy = min(self.in_flight, self.size)
        return PoolStats(
            kind=self.kind,
            size=self.size,
            busy=busy,
            queued=self.in_flight - busy,
            completed=self.completed,
            failed=self.failed,
            timed_out=self.timed_out,
            crashed=self.crashed,
            abandoned=self.abandoned,
            shed=self.shed,
        )
