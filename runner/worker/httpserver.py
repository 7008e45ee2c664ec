"""The worker's HTTP server: Tornado's HTTPServer plus request counting, forwarded headers
trusted per peer, and a drain that loses no request.

No per-request wrapper: `start_request` only counts and remembers the connection's current
`HTTP1Connection` (a dict store), which is all the drain needs to tell busy from idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from . import tornado_adapter as tornado
from .accepting import Acceptor

DEFAULT_MAX_CONNECTIONS = 1000
IDLE_GRACE = 0.5
"""Seconds an idle keep-alive connection gets to send one more request (answered with
`Connection: close`) before it is half-closed."""
_POLL = 0.05


class ProxyTrust:
    """Which peers may set X-Forwarded-For/-Proto and X-Real-Ip. Unix-socket peers are local
    processes behind file permissions, so they are trusted."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any = "*" in allowed
        self.networks = [
            ipaddress.ip_network(item, strict=False) for item in allowed if item != "*"
        ]

    def allows(self, address: Any) -> bool:
        if self.any or not isinstance(address, tuple):
            return True
        try:
            ip = ipaddress.ip_address(address[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


class DrainingHTTPServer(HTTPServer):
    """HTTPServer that counts requests and can `drain()`. Extra keywords: `proxy_trust`
    (a `ProxyTrust`, or None to ignore forwarded headers from everyone) and `max_connections`
    (the accept cap, see `accepting.Acceptor`). A header block over `max_header_size` is
    answered 431 before the connection closes."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        self._trust: ProxyTrust | None = kwargs.pop("proxy_trust", None)
        self.max_connections: int = kwargs.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
        kwargs["xheaders"] = False  # decided per connection in start_request
        super().initialize(*args, **kwargs)
        self.requests = 0
        self.draining = False
        self.acceptor: Acceptor | None = None
        self._current: dict[object, HTTP1Connection] = {}
        self._trusted: set[IOStream] = set()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on `sockets` through the shared `Acceptor` (Tornado's own accept handler
        spins on EMFILE and has no cap); must run on the server's loop."""
        if self.acceptor is not None:
            self.acceptor.add(list(sockets))
            return
        self.acceptor = Acceptor(self, list(sockets), self.max_connections)
        self.acceptor.start()

    def accepted(self, sock: socket.socket, address: Any) -> None:
        """A connection from the acceptor: Tornado's own handling (TLS wrap, IOStream)."""
        tornado.accept_handler(self)(sock, address)

    def stop(self) -> None:
        """Stop accepting and close the listening sockets."""
        if self.acceptor is not None:
            self.acceptor.close()
        super().stop()

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        if self._trust is not None and self._trust.allows(address):
            self._trusted.add(stream)
        tornado.before_overflow_close(stream, self._overflowed)
        super().handle_stream(stream, address)

    def _overflowed(self, stream: IOStream) -> None:
        """A bounded read overflowed: answer 431 when it was a header block (no request
        started on the connection yet), not a chunk-size line inside a body."""
        for server_conn, conn in self._current.items():
            if cast(HTTP1ServerConnection, server_conn).stream is stream:
                if not tornado.request_started(conn):
                    _answer_431(stream)
                return

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        self.requests += 1
        self._current[server_conn] = cast(HTTP1Connection, request_conn)
        if self._trust is not None:
            # Single-threaded: the flag is read by the super call right below.
            self.xheaders = cast(HTTP1ServerConnection, server_conn).stream in self._trusted
        return super().start_request(server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._current.pop(server_conn, None)
        self._trusted.discard(cast(HTTP1ServerConnection, server_conn).stream)
        super().on_close(server_conn)
        if self.acceptor is not None:
            self.acceptor.released()

    @property
    def connection_count(self) -> int:
        return len(tornado.open_connections(self))

    def in_flight(self) -> int:
        """Requests whose headers were read and whose response is not finished."""
        return sum(1 for conn in self._current.values() if _busy(conn))

    async def drain(self, timeout: float, on_progress: Callable[[], None] | None = None) -> int:
        """Stop accepting, let in-flight requests finish (answered with `Connection: close`),
        half-close idle keep-alive connections, and wait up to `timeout` seconds for every
        connection to end. Returns how many had to be closed at the deadline."""
        deadline = time.monotonic() + timeout
        self.draining = True
        if self.acceptor is not None:
            self.acceptor.stop()
            self.acceptor.take_queued()  # own --reuse-port sockets lose their queue on close
        self.stop()
        self.conn_params.no_keep_alive = True  # every request read from now on gets a close
        connections = tornado.open_connections(self)
        idle: list[HTTP1ServerConnection] = []
        for server_conn in list(connections):
            conn = self._current.get(server_conn)
            if conn is not None and _busy(conn):
                tornado.close_after_response(conn)
            else:
                idle.append(server_conn)
        grace = min(deadline, time.monotonic() + IDLE_GRACE)
        await self._wait_until(grace, lambda: not any(c in connections for c in idle))
        for server_conn in idle:
            if self._still_idle(server_conn):
                _half_close(server_conn.stream)
        await self._wait_until(deadline, lambda: not connections, on_progress)
        leftover = len(connections)
        for server_conn in list(connections):
            server_conn.stream.close()
        return leftover

    def _still_idle(self, server_conn: HTTP1ServerConnection) -> bool:
        """No request started since the drain began (any request read since then closes its
        connection when answered) and no partial request waiting in the buffer."""
        if server_conn not in tornado.open_connections(self):
            return False
        conn = self._current.get(server_conn)
        if conn is not None and tornado.request_started(conn):
            return False
        return tornado.buffered_bytes(server_conn.stream) == 0

    async def _wait_until(
        self,
        deadline: float,
        done: Callable[[], bool],
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        while not done() and time.monotonic() < deadline:
            if on_progress is not None:
                on_progress()
            await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))


def _busy(conn: HTTP1Connection) -> bool:
    return tornado.request_started(conn) and not tornado.response_finished(conn)


def _half_close(stream: IOStream) -> None:
    """Send FIN and keep reading: the client sees the end, and its close ends the connection
    without the reset a full close could cause."""
    sock = stream.socket
    if sock is None:
        return
    if isinstance(sock, ssl.SSLSocket):
        # TLS: close_notify first, so the client reads a clean end of the TLS stream. The
        # call would wait for the client's close_notify; on a non-blocking socket it raises
        # instead, and the TLS state stays, so the stream keeps reading TLS records.
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            sock.unwrap()
        # SSLSocket.shutdown() drops the TLS state: shut down the TCP socket under it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


def _answer_431(stream: IOStream) -> None:
    """Tornado closes a connection whose header block overflows `max_header_size` without an
    answer; tell the client why first (best effort: one small non-blocking send), then
    half-close (over TLS: close_notify first)."""
    sock = stream.socket
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.send(HEADERS_TOO_LARGE)
    _half_close(stream)
