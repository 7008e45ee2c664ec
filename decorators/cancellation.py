"""Cooperative cancellation for work running in pool threads.

A thread cannot be killed. When its caller times out or disconnects, the thread pool marks the
call's token; code in the thread calls `check_cancelled()` at safe points to stop early.
"""

from __future__ import annotations

import threading

from .errors import TaskCancelled

_local = threading.local()


class CancelToken:
    """Set once by the loop thread when nobody waits for the call's result any more."""

    __slots__ = ("cancelled", "reason")

    def __init__(self) -> None:
        self.cancelled = False
        self.reason = ""

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self.cancelled = True


def check_cancelled() -> None:
    """Raise `TaskCancelled` if the pool call running in this thread was given up.

    Does nothing outside a pool thread, or in a call that is still wanted. Process tasks are
    killed instead, so they never need it.
    """
    token: CancelToken | None = getattr(_local, "token", None)
    if token is not None and token.cancelled:
        raise TaskCancelled(token.reason or "the caller stopped waiting for this call")


def bind(token: CancelToken | None) -> None:
    """Make `token` the one `check_cancelled()` sees in the current thread."""
    _local.token = token
