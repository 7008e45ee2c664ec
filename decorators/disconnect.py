"""Stopping work whose client has gone: a disconnect cancels the awaited pool call.

A cancelled pool call that has not started is dropped; a running thread call is abandoned
(`check_cancelled()` sees it); a running process call is killed when its pool sets
`cancel_running=True`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tornado.web import RequestHandler

T = TypeVar("T")
H = TypeVar("H", bound=RequestHandler)

DISCONNECTED: Any = object()
"""What `until_disconnect` returns when the client went away first."""


async def until_disconnect(handler: RequestHandler, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the handler's client disconnects first; then return
    `DISCONNECTED` instead of a result."""
    inner = asyncio.ensure_future(work)
    connection: Any = handler.request.connection
    if not hasattr(connection, "set_close_callback"):
        return await inner
    stream = getattr(connection, "stream", None)
    if stream is not None and stream.closed():
        inner.cancel()  # the client left before the work began
        return DISCONNECTED  # type: ignore[no-any-return]
    original = handler.on_connection_close
    closed = []

    def on_close() -> None:
        closed.append(True)
        inner.cancel()
        original()

    connection.set_close_callback(on_close)
    try:
        return await inner
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if closed and (task is None or task.cancelling() == 0):
            return DISCONNECTED  # type: ignore[no-any-return]
        raise
    finally:
        if not closed:
            connection.set_close_callback(original)


def cancel_on_disconnect(
    verb: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, None]]:
    """Decorate an `async` handler verb so a client disconnect cancels it (and the pool
    calls it awaits) instead of letting it run to the end for nobody."""

    @functools.wraps(verb)
    async def wrapper(self: RequestHandler, *args: Any, **kwargs: Any) -> None:
        await until_disconnect(self, verb(self, *args, **kwargs))

    return wrapper
