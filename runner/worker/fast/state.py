"""What every client connection of one fast server shares: the application, the limits, the
forwarded-header trust, the drain flag and the counters; and what the server, its drain and
its timeout sweep use of a client connection (`ServedConnection`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tornado.httputil import HTTPServerConnectionDelegate

if TYPE_CHECKING:
    from ..httpserver import ProxyTrust
    from .connection import RequestConnection


READ_PAUSE_BYTES = 1 << 20
"""Body bytes of one request read and not yet handed to its handler at which reading from
the client pauses; it resumes once the handler has taken all but half of them."""


class ServedConnection(Protocol):
    """A client connection (`protocol.ClientConnection`) as the server, its drain and its
    timeout sweep see it."""

    queue: deque[RequestConnection]
    """Requests read and not yet answered, the one in progress first."""
    deadline: float
    """When the timeout sweep calls `timed_out` (idle or body timeout)."""

    def idle(self) -> bool:
        """Between requests, with no partial request read."""
        ...

    def timed_out(self) -> None:
        """`deadline` has passed: close."""
        ...

    def half_close(self) -> None:
        """Send FIN and keep reading: the client's close then ends the connection."""
        ...

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        ...


@dataclass
class Limits:
    """Per-request limits; a handler may change the body ones for its own request."""

    max_header_size: int = 65536
    max_body_size: int = 10 << 20
    body_timeout: float = 60.0
    idle_timeout: float = 3600.0
    chunk_size: int = 65536
    """Largest body piece handed to a delegate at once (Tornado's default)."""


@dataclass(eq=False)
class ServerState:
    """Shared by the server and its connections (one event loop, so no locking)."""

    app: HTTPServerConnectionDelegate | Callable[[Any], None]
    limits: Limits
    trust: ProxyTrust | None = None
    decompress: bool = False
    trusted_downstream: tuple[str, ...] = ()
    """Proxies skipped in X-Forwarded-For (Tornado's `trusted_downstream`)."""
    no_keep_alive: bool = False
    """Close every connection after one request (Tornado's `no_keep_alive`)."""
    draining: bool = False
    """Set by the drain: every request read from now on is answered with Connection: close."""
    requests: int = 0
    connections: set[ServedConnection] = field(default_factory=set)
    _ready: asyncio.Future[None] | None = None
    is_delegate: bool = field(init=False)
    """`app` is an HTTPServerConnectionDelegate (else a plain `callback(request)`)."""

    def __post_init__(self) -> None:
        self.is_delegate = isinstance(self.app, HTTPServerConnectionDelegate)

    def ready(self) -> asyncio.Future[None]:
        """A resolved future, returned by writes while the transport takes more data (one
        per server: creating one per write would cost time for nothing)."""
        future = self._ready
        if future is None:
            future = self._ready = asyncio.get_running_loop().create_future()
            future.set_result(None)
        return future
