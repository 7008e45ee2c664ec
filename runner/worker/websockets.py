"""The worker's open WebSocket connections, and how a drain closes them.

Tornado detaches a WebSocket from its HTTP server, so the HTTP drain never sees it. The
worker therefore installs one wrapper around `tornado.websocket.WebSocketHandler.get` at start,
before it loads the app: every handler class the app defines inherits it, with no change to
user code, and it works whichever HTTP server carries the upgrade. Tornado's `get` awaits
the handshake, `open()` and the whole frame loop, so a handler is in the registry exactly
while its connection lives (tests/test_websockets_tracking.py checks this against Tornado).

A draining HTTP server answers every request with `Connection: close`, which would replace
the `Connection: Upgrade` of a 101 and fail the client's handshake. So the install also wraps
`flush` (where the headers go out) to keep a 101's connection header: an upgrade that reaches
a draining worker opens, and is then closed like the others, with a close code.

On a drain, `close_all(code)` first lets handlers say their last words: a handler that
defines `on_server_shutdown(self, code)` (plain or async) has it called with the close code,
all of them together, for up to `LAST_WORDS_SECONDS`. Then every open WebSocket gets a close
frame with `code`: 1012 (service restart) when the master replaces the worker, 1001 (going
away) when the server stops (see `close_code_for`). The client's answering close frame ends
the connection; one still open after `CLOSE_HANDSHAKE_SECONDS` is closed without waiting.

A client's messages still in flight when the close frame goes out reach `on_message`, and an
echo there meets `WebSocketClosedError`, which Tornado logs as a traceback. tornado-run chose
to close those connections, so from the start of a drain such errors are counted instead
(`closed_writes`: the records Tornado would have logged, reported in the drain's one
summary line) and not logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tornado.concurrent import Future
from tornado.http1connection import HTTP1Connection
from tornado.websocket import WebSocketHandler, WebSocketProtocol

from ..control.channel import STOP_REPLACED
from ..lifecycle import GOING_AWAY, SERVICE_RESTART
from . import tornado_adapter as tornado

log = logging.getLogger("tornado_run.worker")

LAST_WORDS_SECONDS = 1.0
"""How long handlers' `on_server_shutdown` may run before the close frames go out."""
CLOSE_HANDSHAKE_SECONDS = 1.0
"""How long clients get to answer the close frame before their connection is closed."""
_POLL = 0.02
_REASONS = {SERVICE_RESTART: "server restart", GOING_AWAY: "server shutdown"}
_ERROR_LOGGERS = ("tornado.application", "asyncio")


class ShutdownAware(Protocol):
    """A WebSocket handler that opts in to last words before the server closes it."""

    def on_server_shutdown(self, code: int) -> Awaitable[None] | None:
        """Called on the worker's loop with the close code about to be sent (1001 or 1012);
        may be async. The handler may still write messages, or close itself."""
        ...


def close_code_for(stop_reason: int) -> int:
    """The close code for the `STOP_*` reason the master wrote before its TERM: 1012 when
    the worker is replaced, else 1001 (the server stops, or the TERM came from elsewhere)."""
    return SERVICE_RESTART if stop_reason == STOP_REPLACED else GOING_AWAY


@dataclass
class CloseResult:
    """What `close_all` did: close frames sent, and connections closed at the deadline
    because the client had not answered."""

    closed: int = 0
    cut: int = 0


_GetMethod = Callable[..., Awaitable[None]]
_FlushMethod = Callable[[WebSocketHandler, bool], "Future[None]"]


class WebSocketRegistry:
    """The live WebSocket handlers of this process; `install()` starts tracking them."""

    def __init__(self) -> None:
        self._handlers: dict[WebSocketHandler, None] = {}  # insertion-ordered set
        self._original: _GetMethod | None = None
        self._own_flush: _FlushMethod | None = None
        self._flush_wrapped = False
        self.draining = False
        self.closed_writes = 0
        self._filter = _ClosedWriteFilter(self)

    def install(self) -> None:
        """Wrap `WebSocketHandler.get` so every handler registers itself while it lives, and
        its `flush` so a 101 keeps `Connection: Upgrade` on a draining connection. One
        registry per process: installing a second one raises RuntimeError."""
        current = WebSocketHandler.get
        if getattr(current, "_tornado_run_registry", None) is not None:
            raise RuntimeError("a WebSocket registry is already installed in this process")
        registry = self

        async def get(handler: WebSocketHandler, *args: Any, **kwargs: Any) -> None:
            registry._handlers[handler] = None
            try:
                await current(handler, *args, **kwargs)
            finally:
                registry._handlers.pop(handler, None)

        get._tornado_run_registry = self  # type: ignore[attr-defined]
        get.__doc__ = current.__doc__
        self._original = current
        WebSocketHandler.get = get  # type: ignore[method-assign,assignment]
        self._install_flush()

    def _install_flush(self) -> None:
        flush = WebSocketHandler.flush

        def upgrade_flush(handler: WebSocketHandler, include_footers: bool = False) -> Future[None]:
            connection = handler.request.connection
            if handler.get_status() == 101 and isinstance(connection, HTTP1Connection):
                tornado.keep_open_after_response(connection)  # it is detached right after
            return flush(handler, include_footers)

        self._own_flush = vars(WebSocketHandler).get("flush")  # None: inherited
        self._flush_wrapped = True
        WebSocketHandler.flush = upgrade_flush  # type: ignore[method-assign,assignment]
        for name in _ERROR_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def uninstall(self) -> None:
        """Put Tornado's own `get` and `flush` back (tests)."""
        if self._original is not None:
            WebSocketHandler.get = self._original  # type: ignore[method-assign,assignment]
            self._original = None
        if self._flush_wrapped:
            if self._own_flush is not None:
                WebSocketHandler.flush = self._own_flush  # type: ignore[method-assign,assignment]
            else:
                del WebSocketHandler.flush
            self._flush_wrapped = False
        for name in _ERROR_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    @property
    def count(self) -> int:
        """Open WebSocket connections: handshake done and no close begun."""
        return sum(1 for handler in self._handlers if _protocol(handler) is not None)

    @property
    def tracked(self) -> int:
        """Handlers in `get`, including upgrades still in their handshake and closing ones."""
        return len(self._handlers)

    async def close_all(self, code: int, handshake_timeout: float | None = None) -> CloseResult:
        """Last words, then a close frame with `code` to every open WebSocket, then wait for
        the close handshakes (up to `handshake_timeout`, default `CLOSE_HANDSHAKE_SECONDS`)
        and close the connections that did not answer. WebSockets opened meanwhile are closed
        too. Returns what was done."""
        if handshake_timeout is None:
            handshake_timeout = CLOSE_HANDSHAKE_SECONDS
        self.draining = True
        await self._last_words(code)
        reason = _REASONS.get(code)
        deadline = time.monotonic() + handshake_timeout
        closing: dict[WebSocketHandler, WebSocketProtocol] = {}
        while True:
            for handler in list(self._handlers):
                protocol = _protocol(handler)
                if handler not in closing and protocol is not None:
                    closing[handler] = protocol
                    handler.close(code, reason)
            if not self._handlers or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
        cut = [protocol for handler, protocol in closing.items() if handler in self._handlers]
        for protocol in cut:
            protocol.on_connection_close()  # Tornado's abort: close the stream now
        if cut:
            await asyncio.sleep(0)  # let the frame loops see the closed streams
        return CloseResult(closed=len(closing), cut=len(cut))

    async def _last_words(self, code: int) -> None:
        pending: list[Awaitable[Any]] = []
        for handler in list(self._handlers):
            hook = getattr(handler, "on_server_shutdown", None)
            if _protocol(handler) is None or not callable(hook):
                continue
            try:
                result = hook(code)
            except Exception:
                log.exception("%s.on_server_shutdown failed", type(handler).__name__)
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        if not pending:
            return
        tasks = [asyncio.ensure_future(item) for item in pending]
        done, late = await asyncio.wait(tasks, timeout=LAST_WORDS_SECONDS)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("on_server_shutdown failed", exc_info=task.exception())
        for task in late:
            task.cancel()
        if late:
            log.warning(
                "%d on_server_shutdown call(s) still running after %gs; closing anyway",
                len(late),
                LAST_WORDS_SECONDS,
            )


class _ClosedWriteFilter(logging.Filter):
    """Drops, and counts, the logged `WebSocketClosedError`s once the drain has begun."""

    def __init__(self, registry: WebSocketRegistry) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        if self.registry.draining and tornado.is_closed_websocket_write(record):
            self.registry.closed_writes += 1
            return False
        return True


def _protocol(handler: WebSocketHandler) -> WebSocketProtocol | None:
    """The handler's protocol if its handshake is done and no close has begun."""
    protocol = handler.ws_connection
    if protocol is None or protocol.stream is None or protocol.is_closing():
        return None
    return protocol
