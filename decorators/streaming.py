"""Streaming a generator handler verb: one producer thread, a bounded hand-off, and each
chunk written and flushed on the loop.

The producer blocks once `depth` chunks wait unflushed, so a slow client slows the
generator instead of growing memory. A disconnect closes the generator in its own thread
(its `finally` blocks run there).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Generator
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from .pools.api import Pool

DEPTH = 8  # chunks produced ahead of the client


class _Channel:
    """Producer thread -> loop hand-off holding at most `depth` unflushed chunks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int) -> None:
        self._loop = loop
        self._slots = threading.Semaphore(depth)
        self._items: asyncio.Queue[tuple[Any] | None] = asyncio.Queue()
        self.closed = False

    def put(self, chunk: Any) -> bool:
        """Producer side: wait for a free slot; False once the consumer has gone."""
        self._slots.acquire()
        if self.closed:
            return False
        self._loop.call_soon_threadsafe(self._items.put_nowait, (chunk,))
        return True

    async def get(self) -> tuple[Any] | None:
        return await self._items.get()

    def consumed(self) -> None:
        self._slots.release()

    def close(self) -> None:
        """Loop side: end the stream and wake a producer waiting for a slot."""
        if not self.closed:
            self.closed = True
            self._slots.release()
        self._items.put_nowait(None)


def _produce(
    fn: Callable[..., Generator[Any, None, None]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    channel: _Channel,
) -> None:
    generator = fn(*args, **kwargs)
    try:
        for chunk in generator:
            if not channel.put(chunk):
                break
    finally:
        generator.close()


def _collect(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned stream's error is not worth a log line


async def stream(
    handler: RequestHandler,
    pool: Pool,
    fn: Callable[..., Generator[Any, None, None]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Run generator `fn` in `pool`, writing and flushing each chunk as it arrives.

    Raises what the generator raised (or `Overloaded` before any chunk is written).
    """
    channel = _Channel(asyncio.get_running_loop(), DEPTH)
    producer = asyncio.ensure_future(
        pool.run(_produce, (fn, args, kwargs, channel), {}, timeout=None)
    )
    producer.add_done_callback(lambda _: channel.close())
    connection: Any = handler.request.connection
    original = handler.on_connection_close
    gone = []

    def on_close() -> None:
        gone.append(True)
        try:
            original()
        finally:
            channel.close()

    if hasattr(connection, "set_close_callback"):
        connection.set_close_callback(on_close)
    try:
        while (item := await channel.get()) is not None:
            handler.write(item[0])
            try:
                await handler.flush()
            except StreamClosedError:
                gone.append(True)
                break
            channel.consumed()
    finally:
        channel.close()
        if hasattr(connection, "set_close_callback"):
            connection.set_close_callback(original)
    if gone or not producer.done() or _stream_closed(handler):
        # Withdraw the call: a generator busy between two chunks sees check_cancelled().
        producer.cancel()
        producer.add_done_callback(_collect)
        return
    await producer


def _stream_closed(handler: RequestHandler) -> bool:
    stream = getattr(handler.request.connection, "stream", None)
    with contextlib.suppress(Exception):
        return bool(stream is not None and stream.closed())
    return False
