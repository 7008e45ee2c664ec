"""Exceptions a pool call can raise. They are `tornado.web.HTTPError`s, so one that escapes a
handler answers with the matching status (504, 503, 500) instead of a bare 500."""

from __future__ import annotations

import math

from tornado.web import HTTPError


class TaskTimeout(HTTPError):
    """The call did not finish within its timeout (HTTP 504).

    A process task was killed; a thread task keeps running and was counted as abandoned.
    """

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(504, "%s", message)
        self.timeout = timeout


class Overloaded(HTTPError):
    """The pool already holds `max_pending` waiting calls (HTTP 503); retry later.

    `retry_after` is a whole number of seconds estimated from how fast the pool drains.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(503, "%s", message)
        self.retry_after = max(1, math.ceil(retry_after))


class WorkerCrashed(HTTPError):
    """The process running the call died (HTTP 500); other calls are unaffected."""

    def __init__(self, message: str, *, exitcode: int | None = None) -> None:
        super().__init__(500, "%s", message)
        self.exitcode = exitcode


class TaskCancelled(Exception):
    """Raised by `check_cancelled()` in a pool thread whose caller stopped waiting."""
