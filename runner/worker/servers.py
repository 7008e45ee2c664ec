"""The HTTP server a worker runs: what the worker asks of it, and how it is built from the
settings. Every server kind implements `WorkerServer`; the worker knows nothing else of it."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol, TypedDict

from tornado.httputil import HTTPServerConnectionDelegate

from ..settings.options import Settings
from . import tls
from .accepting import Acceptor
from .httpserver import DrainingHTTPServer, ProxyTrust


class WorkerServer(Protocol):
    """An HTTP server on the worker's inherited sockets that counts requests and drains."""

    @property
    def requests(self) -> int:
        """Requests started since the worker began serving."""
        ...

    @property
    def connection_count(self) -> int:
        """Open HTTP connections."""
        ...

    @property
    def acceptor(self) -> Acceptor | None:
        """The accept loop on the listening sockets (None before `add_sockets`)."""
        ...

    def in_flight(self) -> int:
        """Requests whose headers were read and whose response is not finished."""
        ...

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        """Start accepting on listening sockets, through an `Acceptor`."""
        ...

    async def drain(self, timeout: float, on_progress: Callable[[], None] | None = None) -> int:
        """Stop accepting, finish in-flight requests, close idle connections without losing a
        request; return how many connections were still open at the deadline."""
        ...


def fast_available() -> bool:
    """True where the fast server can run (httptools imports)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


class _ServerOptions(TypedDict):
    """The keyword arguments both server kinds take under the same names."""

    proxy_trust: ProxyTrust | None
    idle_connection_timeout: float
    body_timeout: float
    max_body_size: int
    max_header_size: int
    max_connections: int


def build_server(settings: Settings, app: HTTPServerConnectionDelegate) -> WorkerServer:
    """The server the settings ask for (`--http`), serving `app` (over TLS with --certfile:
    the files are read now). Raises `tls.TLSBootError` when they cannot be used."""
    s = settings
    context = tls.server_context(s)
    if context is not None:
        tls.quiet_connection_errors()
    common = _ServerOptions(
        proxy_trust=ProxyTrust(s.forwarded_allow_ips) if s.proxy_headers else None,
        idle_connection_timeout=s.idle_timeout,
        body_timeout=s.body_timeout,
        max_body_size=s.max_body_size,
        max_header_size=s.max_header_size,
        max_connections=s.max_connections,
    )
    if s.http == "fast" or (s.http == "auto" and fast_available()):
        from .fast.server import FastHTTPServer

        return FastHTTPServer(app, ssl_context=context, **common)
    buffer = max(s.max_body_size, s.max_header_size, 1 << 20)
    return DrainingHTTPServer(app, ssl_options=context, max_buffer_size=buffer, **common)
