"""Frames waiting to be written to a non-blocking socket, on an event loop.

Frames queued during one turn of the loop leave together in one `sendmsg` at the start of the
next (a write to a unix socket costs far more than the bytes it carries: it wakes the peer),
with their fds in frame order, which is the order a `wire.FrameReader` hands them out. What
the socket does not take waits until it is writable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable

from ..offload import wire

BATCH_BYTES = 1 << 20  # at most this much joined into one write


class Outbox:
    """Writes frames to `sock`; `on_error(error)` hears of a failed write (the peer is gone)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_error: Callable[[OSError], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_error = on_error
        self._pending: deque[tuple[bytes, list[int]]] = deque()
        self._scheduled = False
        self._waiting = False  # for the socket to be writable
        self._closed = False

    def put(self, frame: wire.Frame) -> None:
        """Queue `frame`; its fds are the outbox's from now on (sent, or closed)."""
        if self._closed:
            frame.close()
            return
        self._pending.append((b"".join(wire.frame_parts(frame)), frame.fds))
        frame.fds = []
        if not self._scheduled and not self._waiting:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what the socket takes now."""
        self._scheduled = False
        while self._pending and not self._closed:
            data, fds = self._batch()
            try:
                sent = self.sock.sendmsg([data], wire.ancillary(fds))
            except BlockingIOError:
                self._pending.appendleft((data, fds))
                self._wait_writable()
                return
            except OSError as error:
                self._pending.appendleft((data, fds))
                self.on_error(error)
                return
            _close_fds(fds)
            if sent < len(data):
                self._pending.appendleft((data[sent:], []))  # the fds went with byte 0
                self._wait_writable()
                return
        if self._waiting:
            self._waiting = False
            with contextlib.suppress(ValueError, RuntimeError):
                self.loop.remove_writer(self.sock.fileno())

    def _batch(self) -> tuple[bytes, list[int]]:
        data, fds = self._pending.popleft()
        parts = [data]
        size = len(data)
        while self._pending:
            more, more_fds = self._pending[0]
            if size + len(more) > BATCH_BYTES or len(fds) + len(more_fds) > wire.MAX_FDS:
                break
            self._pending.popleft()
            parts.append(more)
            fds = fds + more_fds
            size += len(more)
        return (b"".join(parts) if len(parts) > 1 else data), fds

    def _wait_writable(self) -> None:
        if not self._waiting:
            self._waiting = True
            self.loop.add_writer(self.sock.fileno(), self.flush)

    def close(self) -> None:
        """Drop what is left (closing its fds) and stop writing."""
        self._closed = True
        if self._waiting:
            with contextlib.suppress(ValueError, RuntimeError):
                self.loop.remove_writer(self.sock.fileno())
        while self._pending:
            _close_fds(self._pending.popleft()[1])


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
