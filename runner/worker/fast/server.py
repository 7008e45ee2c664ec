"""`FastHTTPServer`: the worker's HTTP/1.1 server on httptools and asyncio transports,
serving an unchanged Tornado application through Tornado's own delegate interfaces. It
implements `WorkerServer` (requests, connections, in-flight count, drain)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from tornado.httputil import HTTPServerConnectionDelegate
from tornado.log import gen_log

from ..accepting import Acceptor
from ..httpserver import ProxyTrust
from ..loops import current_loop
from .drain import drain_connections
from .protocol import ClientConnection
from .state import Limits, ServerState
from .timeouts import TimeoutSweep, sweep_interval

log = logging.getLogger("tornado_run.fast")

DEFAULT_MAX_HEADER_SIZE = 64 << 10
SETUP_WAIT = 5.0
"""Longest a drain waits for accepted sockets to become connections before it starts."""


class FastHTTPServer:
    """Serves `app` (an `HTTPServerConnectionDelegate` such as `tornado.web.Application`,
    or a plain `callback(request)`) on the sockets given to `add_sockets`, or on each
    socket given to `accepted`. With `ssl_context`, connections are TLS."""

    def __init__(
        self,
        app: HTTPServerConnectionDelegate | Callable[[Any], None],
        *,
        proxy_trust: ProxyTrust | None = None,
        idle_connection_timeout: float | None = None,
        body_timeout: float | None = None,
        max_body_size: int | None = None,
        max_header_size: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        decompress_request: bool = False,
        chunk_size: int | None = None,
        protocol: str | None = None,
        trusted_downstream: list[str] | None = None,
        no_keep_alive: bool = False,
        max_connections: int = 1000,
    ) -> None:
        limits = Limits(
            max_header_size=max_header_size or DEFAULT_MAX_HEADER_SIZE,
            max_body_size=max_body_size if max_body_size is not None else 100 << 20,
            body_timeout=body_timeout or 3600.0,
            idle_timeout=idle_connection_timeout or 3600.0,
            chunk_size=chunk_size or 65536,
        )
        self.state = ServerState(
            app,
            limits,
            proxy_trust,
            decompress_request,
            tuple(trusted_downstream or ()),
            no_keep_alive,
        )
        self.ssl_context = ssl_context
        self.scheme = protocol or ("https" if ssl_context is not None else "http")
        self.max_connections = max_connections
        self.acceptor: Acceptor | None = None
        self._setting_up: set[asyncio.Task[Any]] = set()
        self.sweep = TimeoutSweep(
            self.state.connections,  # type: ignore[arg-type]
            sweep_interval(idle_connection_timeout, body_timeout),
        )

    @property
    def requests(self) -> int:
        """Requests started since the server began serving."""
        return self.state.requests

    @property
    def connection_count(self) -> int:
        """Open HTTP connections (a detached WebSocket connection is no longer one)."""
        return len(self.state.connections)

    def in_flight(self) -> int:
        """Requests whose headers were read and whose response is not finished."""
        return sum(1 for conn in self.state.connections if conn.queue and conn.queue[0].busy)

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        """Start accepting on listening sockets, through the shared `Acceptor` (backoff when
        out of file descriptors, at most `max_connections` open)."""
        if self.acceptor is not None:
            self.acceptor.add(list(sockets))
        else:
            self.acceptor = Acceptor(self, list(sockets), self.max_connections)
            self.acceptor.start()
        self.sweep.start()

    def add_socket(self, sock: socket.socket) -> None:
        """Start accepting on one listening socket (Tornado's name)."""
        self.add_sockets([sock])

    def accepted(self, sock: socket.socket, address: object) -> None:
        """Serve one accepted client socket."""
        sock.setblocking(False)
        loop = current_loop()
        factory = partial(ClientConnection, self.state, address, self.scheme)
        coro = loop.connect_accepted_socket(factory, sock, ssl=self.ssl_context)
        task = loop.create_task(coro)
        self._setting_up.add(task)
        task.add_done_callback(self._setting_up.discard)
        task.add_done_callback(partial(_connected, sock, address))
        self.sweep.start()

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (connections already accepted are
        served on)."""
        if self.acceptor is not None:
            self.acceptor.close()

    async def drain(self, timeout: float, on_progress: Callable[[], None] | None = None) -> int:
        """Stop accepting, let in-flight requests finish (answered with `Connection:
        close`), half-close idle keep-alive connections and wait up to `timeout` seconds
        for every connection to end. Returns how many had to be closed at the deadline."""
        deadline = time.monotonic() + timeout
        if self.acceptor is not None:
            self.acceptor.stop()
            self.acceptor.take_queued()  # own --reuse-port sockets lose their queue on close
            self.acceptor.close()
        if self._setting_up:  # accepted, not yet connections (a TLS handshake, say)
            await asyncio.wait(set(self._setting_up), timeout=min(timeout, SETUP_WAIT))
        try:
            remaining = max(0.0, deadline - time.monotonic())
            return await drain_connections(self.state, remaining, on_progress)
        finally:
            self.sweep.stop()

    async def close_all_connections(self) -> None:
        """Close every connection at once (tests and embedding)."""
        for conn in list(self.state.connections):
            conn.abort()
        await asyncio.sleep(0)
        self.sweep.stop()


def _connected(sock: socket.socket, address: object, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        sock.close()
        return
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, ssl.SSLError | ConnectionError):  # that client's problem only
        # Tornado's own wording, so the worker's filter for TLS client errors applies.
        gen_log.warning("SSL Error on %s %s: %s", sock.fileno(), address, exc)
    else:
        log.error("setting up a connection failed", exc_info=exc)
    sock.close()


__all__ = ["ClientConnection", "FastHTTPServer"]
