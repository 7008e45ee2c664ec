"""Awaiting one blocking step (starting or closing a pool) in a thread of its own.

Not `asyncio.to_thread`: that borrows the loop's default executor, which an application may
have replaced, sized to its own needs, or already shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


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
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(_settle, future, value, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
