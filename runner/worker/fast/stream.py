"""An IOStream stand-in over an asyncio transport, for connections that leave HTTP.

Tornado's WebSocket protocol (and any handler that calls `detach()`) takes the connection's
IOStream and from then on uses only `read_bytes`, `write`, `close`, `closed`,
`set_nodelay`, `set_close_callback`, `error` and `io_loop`; other handlers add
`read_until`, `read_until_regex`, `read_until_close`, `fileno` or `socket`.
`TransportStream` gives those with IOStream's semantics over the transport the fast HTTP
server already owns, so the upgrade keeps the socket (plain or TLS) and the bytes the
client sent past the request.

Semantics kept from IOStream:
- a closed stream raises `StreamClosedError` on `write` and on a read the buffer cannot
  satisfy; data buffered before the close can still be read;
- pending futures fail with `StreamClosedError(real_error=error)`; the close callback runs
  once, on the next loop iteration;
- the peer's end of data closes the stream (IOStream has no half-open state);
- a read larger than `max_buffer_size` closes the stream with `StreamBufferFullError`;
- a `read_until*` whose delimiter is not within `max_bytes` closes the stream with
  `UnsatisfiableReadError`.

Flow control: a write's future resolves once the data is handed to the transport and the
transport is not paused (else when it resumes); reading from the transport pauses while more
than `read_high_water` bytes wait with no read asking for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sys
from collections.abc import Callable
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import StreamBufferFullError, StreamClosedError, UnsatisfiableReadError

log = logging.getLogger("tornado.general")

READ_HIGH_WATER = 256 * 1024
"""Bytes buffered with no read pending before reading from the transport pauses."""
MAX_BUFFER_SIZE = 100 * 1024 * 1024
"""IOStream's default largest read buffer."""


class TransportStream(asyncio.Protocol):
    """IOStream-compatible stream over `transport`, whose protocol it becomes at once.
    `initial` is data already received from the peer (read past the upgrade request)."""

    def __init__(
        self,
        transport: asyncio.Transport,
        initial: bytes = b"",
        *,
        max_buffer_size: int = MAX_BUFFER_SIZE,
        read_high_water: int = READ_HIGH_WATER,
    ) -> None:
        self.io_loop = IOLoop.current()
        self.error: BaseException | None = None
        self.max_buffer_size = max_buffer_size
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._high_water = read_high_water
        self._buffer = bytearray(initial)
        self._read_future: asyncio.Future[bytes] | None = None
        self._read_bytes = 0  # what the pending read waits for: a size, with `partial`,
        self._read_partial = False
        self._read_until: bytes | re.Pattern[bytes] | None = None  # or a delimiter,
        self._read_max: int | None = None
        self._read_to_close = False  # or the end of the stream
        self._write_futures: list[asyncio.Future[None]] = []
        # The transport tells a new protocol only when it resumes, so start from its state.
        self._write_paused = (
            transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]
        )
        self._reading_paused = False
        self._closed = transport.is_closing()
        self._close_callback: Callable[[], None] | None = None
        transport.set_protocol(self)
        self._regulate_reading()  # the HTTP side may have paused the transport

    # The IOStream interface

    def read_bytes(self, num_bytes: int, partial: bool = False) -> asyncio.Future[bytes]:
        """A future for the next `num_bytes` bytes (with `partial`, for 1 to `num_bytes`
        bytes as soon as any are buffered). Raises `StreamClosedError` at once if the stream
        is closed and the buffer cannot satisfy the read."""
        self._check_not_reading()
        self._read_bytes, self._read_partial = num_bytes, partial
        if num_bytes > self.max_buffer_size and len(self._buffer) < num_bytes:
            self._check_closed()
            self._overflow()
        return self._start_read()

    def read_until(self, delimiter: bytes, max_bytes: int | None = None) -> asyncio.Future[bytes]:
        """A future for the bytes up to and including `delimiter`. If it is not within
        `max_bytes` bytes, the stream closes (and the future fails)."""
        return self._read_to(delimiter, max_bytes)

    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> asyncio.Future[bytes]:
        """A future for the bytes up to and including the first match of `regex`; as
        `read_until` with `max_bytes`."""
        return self._read_to(re.compile(regex), max_bytes)

    def read_until_close(self) -> asyncio.Future[bytes]:
        """A future for everything until the stream closes (at once if it is closed)."""
        self._check_not_reading()
        self._read_to_close = True
        return self._start_read()

    def write(self, data: bytes | memoryview) -> asyncio.Future[None]:
        """Hand `data` to the transport. The future resolves when the transport is not
        paused (at once, usually); it fails with `StreamClosedError` if the stream closes
        first. Raises `StreamClosedError` at once on a closed stream."""
        self._check_closed()
        if data:
            self._transport.write(data)
        future: asyncio.Future[None] = self._loop.create_future()
        future.add_done_callback(_retrieve)  # callers often do not wait for writes
        if self._write_paused:
            self._write_futures.append(future)
        else:
            future.set_result(None)
        return future

    def close(self, exc_info: Any = False) -> None:
        """Close the stream: data already handed to the transport is flushed when possible,
        pending reads are answered from the buffer or fail, and the close callback runs.
        `exc_info` as IOStream's: True (the current exception), an exception or a tuple."""
        if self._closed:
            return
        self._set_error(exc_info)
        if self._transport.get_write_buffer_size() > 0 and self._write_paused:
            self._transport.abort()  # the peer is not reading: as IOStream, drop the rest
        else:
            self._transport.close()
        self._signal_closed()

    def closed(self) -> bool:
        """True once the stream is closed, by either side."""
        return self._closed

    def fileno(self) -> Any:
        """The socket (IOStream's `fileno()` gives the socket object, not an int)."""
        return self._transport.get_extra_info("socket")

    def reading(self) -> bool:
        """True while a read is pending."""
        return self._read_future is not None and not self._read_future.done()

    def writing(self) -> bool:
        """True while written data waits in the transport's buffer."""
        return not self._closed and self._transport.get_write_buffer_size() > 0

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (once) when the stream closes."""
        self._close_callback = callback

    def set_nodelay(self, value: bool) -> None:
        """Set TCP_NODELAY on a TCP connection; a no-op for other sockets."""
        sock = self._transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)

    @property
    def socket(self) -> Any:
        """The TLS object on a TLS connection (`getpeercert()`, `cipher()`), else the socket,
        as IOStream's `socket` offers them."""
        transport = self._transport
        return transport.get_extra_info("ssl_object") or transport.get_extra_info("socket")

    @property
    def transport(self) -> asyncio.Transport:
        """The transport the stream reads and writes."""
        return self._transport

    # asyncio.Protocol callbacks

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._try_finish_read()
        if len(self._buffer) > self.max_buffer_size:
            self._overflow()
            return
        self._regulate_reading()

    def eof_received(self) -> bool:
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._set_error(exc if exc is not None else False)
            self._signal_closed()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        futures, self._write_futures = self._write_futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)

    # Internals

    def _check_closed(self) -> None:
        if self._closed:
            raise StreamClosedError(real_error=self.error)

    def _check_not_reading(self) -> None:
        if self.reading():
            self._check_closed()
            raise AssertionError("Already reading")
        self._read_bytes, self._read_partial = 0, False
        self._read_until, self._read_max, self._read_to_close = None, None, False

    def _read_to(
        self, delimiter: bytes | re.Pattern[bytes], max_bytes: int | None
    ) -> asyncio.Future[bytes]:
        self._check_not_reading()
        self._read_until, self._read_max = delimiter, max_bytes
        return self._start_read()

    def _start_read(self) -> asyncio.Future[bytes]:
        """Make the read just described the pending one and answer it if the buffer can.
        Raises `StreamClosedError` if the stream is closed and the buffer cannot."""
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._read_future = future
        closed = self._closed
        self._try_finish_read()
        if closed and not future.done():
            self._read_future = None
            raise StreamClosedError(real_error=self.error)
        self._regulate_reading()
        return future

    def _wanted(self) -> int | None:
        """How many buffered bytes the pending read takes, or None if it must wait.
        Raises `UnsatisfiableReadError` past the read's `max_bytes`."""
        size = len(self._buffer)
        if self._read_to_close:
            return size if self._closed else None
        delimiter = self._read_until
        if delimiter is None:
            if size < self._read_bytes and not (self._read_partial and size > 0):
                return None
            return min(self._read_bytes, size)
        if isinstance(delimiter, bytes):
            at = self._buffer.find(delimiter)
            end = at + len(delimiter) if at >= 0 else None
        else:
            match = delimiter.search(self._buffer)
            end = match.end() if match is not None else None
        limit = self._read_max
        if limit is not None and (end if end is not None else size) > limit:
            pattern = delimiter if isinstance(delimiter, bytes) else delimiter.pattern
            raise UnsatisfiableReadError(f"delimiter {pattern!r} not found within {limit} bytes")
        return end

    def _try_finish_read(self) -> None:
        """Answer the pending read from the buffer if it can be."""
        future = self._read_future
        if future is None:
            return
        if future.done():  # cancelled by its caller
            self._read_future = None
            return
        try:
            count = self._wanted()
        except UnsatisfiableReadError as exc:
            self._read_future = None
            log.info("Unsatisfiable read, closing connection: %s", exc)
            self.close(exc_info=exc)
            future.set_exception(StreamClosedError(real_error=self.error))
            future.exception()  # retrieved, as the close's other failures
            return
        if count is not None:
            self._read_future = None
            data = bytes(self._buffer[:count])
            del self._buffer[:count]
            future.set_result(data)

    def _regulate_reading(self) -> None:
        """Pause the transport while enough is buffered and no read wants more."""
        if self._closed:
            return
        wanting = self.reading()
        if not wanting and len(self._buffer) > self._high_water:
            self._pause_reading()
        else:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused or not self._transport.is_reading():
            self._reading_paused = False
            with contextlib.suppress(RuntimeError):  # a closing transport cannot resume
                self._transport.resume_reading()

    def _overflow(self) -> None:
        log.error("Reached maximum read buffer size")
        self.close(exc_info=StreamBufferFullError("Reached maximum read buffer size"))

    def _set_error(self, exc_info: Any) -> None:
        if isinstance(exc_info, tuple):
            self.error = exc_info[1]
        elif isinstance(exc_info, BaseException):
            self.error = exc_info
        elif exc_info:
            self.error = sys.exc_info()[1]

    def _signal_closed(self) -> None:
        self._closed = True
        self._try_finish_read()
        pending: list[asyncio.Future[Any]] = list(self._write_futures)
        self._write_futures = []
        if self._read_future is not None:
            pending.append(self._read_future)
            self._read_future = None
        for future in pending:
            if not future.done():
                future.set_exception(StreamClosedError(real_error=self.error))
                future.exception()  # retrieved: a reader gone with the stream logs nothing
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            self.io_loop.add_callback(callback)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
