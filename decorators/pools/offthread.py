"""Handing an outcome from another thread to the event loop, and awaiting one blocking
step (starting or closing a pool) in a thread of its own.

Not `asyncio.to_thread`: that borrows the loop's default executor, which an application may
have replaced, sized to its own needs, or already shut down. Not Tornado's
`future_set_result_unless_cancelled` either: a pool future may already hold a timeout, and a
late outcome for it must be dropped, not raise `InvalidStateError` or be logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    """On the loop: resolve `future` with `value`, or fail it with `error` when that is set.
    A future already done (timed out or cancelled meanwhile) is left as it is."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    value: Any = None,
    error: BaseException | None = None,
) -> None:
    """From any thread: `settle` `future` on `loop`; nothing happens once the loop is closed
    (nobody waits any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle, future, value, error)


def run_in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Start `fn()` in a new daemon thread; the returned future resolves on the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn()
        except BaseException as caught:
            error = caught
        settle_threadsafe(loop, future, value, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
