"""`StreamView`: the few IOStream members applications reach through
`request.connection.stream` on Tornado's server, over the fast server's transport."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from tornado.iostream import StreamClosedError


class StreamView:
    """`write()` (raw bytes, bypassing HTTP framing), `close()`, `closed()`,
    `set_close_callback()`, `set_nodelay()`, `fileno()` and `socket` (whose `getpeercert()`
    gives `HTTPServerRequest.get_ssl_certificate` the client certificate on TLS)."""

    def __init__(
        self,
        transport: asyncio.Transport,
        send: Callable[[bytes], asyncio.Future[None]],
        on_close: Callable[[Callable[[], None] | None], None],
        client_gone: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self._send = send
        self._on_close = on_close
        self._client_gone = client_gone

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Write raw bytes; the future waits while the transport's buffer is full."""
        if self._transport.is_closing():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(StreamClosedError())
            return future
        return self._send(data)

    def close(self) -> None:
        self._transport.close()

    def closed(self) -> bool:
        """True once the connection closes or the client has ended its data (a half-close
        looks like a close: the application is told so, as on Tornado)."""
        return self._transport.is_closing() or self._client_gone()

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (once, on the next loop iteration) when the connection closes."""
        self._on_close(callback)

    def fileno(self) -> Any:
        """The socket, as IOStream's `fileno()` gives it."""
        return self._transport.get_extra_info("socket")

    def set_nodelay(self, value: bool) -> None:
        sock = self._transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))

    @property
    def socket(self) -> Any:
        """The TLS object on a TLS connection (it has `getpeercert`), else the socket."""
        return self._transport.get_extra_info("ssl_object") or self._transport.get_extra_info(
            "socket"
        )
