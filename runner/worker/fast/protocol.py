"""`ClientConnection`: one client's HTTP/1.x connection on an asyncio transport. It parses
with `RequestParser`, drives Tornado's delegates (`start_request`, `headers_received`,
`data_received`, `finish`, `on_connection_close`) one request at a time, answers pipelined
requests in order, and applies flow control both ways: reading pauses while a request
waits behind another or READ_PAUSE_BYTES of a body wait for the handler, writes return a
future that waits while the transport's buffer is full. `detach()` and Upgrade requests with
a body are `Handover`'s (handover.py)."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from tornado import httputil
from tornado.log import gen_log

from .. import tornado_adapter as tornado
from .connection import RequestConnection, connection_options
from .cycle import RequestCycle
from .handover import Handover
from .parsing import RequestParser
from .refusal import BadRequest
from .state import READ_PAUSE_BYTES, ServerState
from .streamview import StreamView

_STATUS_LINES = {
    400: b"HTTP/1.1 400 Bad Request\r\n\r\n",  # Tornado's bytes, for a malformed message
    414: b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\n\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
}
_REFUSED = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"


class ClientConnection(RequestCycle, Handover, asyncio.Protocol):
    """The HTTP side of one accepted socket; `deadline` is read by the timeout sweep."""

    stream_close_callback: Callable[[], None] | None = None  # set through `stream`

    def __init__(self, state: ServerState, address: Any, scheme: str) -> None:
        self.state = state
        self.address = address
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.context: Any = None
        self.trusted = False
        self.parser = RequestParser(self, state.limits.max_header_size)
        self.queue: deque[RequestConnection] = deque()
        self.reading: RequestConnection | None = None
        self.deadline = math.inf
        self.write_paused = False
        self.read_paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._unsent: RequestConnection | None = None  # finished while writing was paused
        self._upgrade: bytearray | None = None  # bytes past a request that upgrades
        self._error: BadRequest | None = None  # answer once the requests before it are done
        self._eof_sent = False  # half-closed by the drain: nothing more can be answered
        self._raw_body = 0  # body bytes still to come of an Upgrade request with a body
        # The bytes received since a request boundary, kept for detach() (see `_unparsed`):
        # the packets as they came, None once over KEPT_BYTES, and the number of requests
        # parsed before them.
        self._received: list[bytes] | None = []
        self._received_size = 0
        self._received_from = 0
        self._parsed = 0
        self._client_done = False  # half-closed by the client: close once answered

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        family = sock.family if sock is not None else socket.AF_INET
        self.context = tornado.request_context(
            family, self.address, self.scheme, self.state.trusted_downstream
        )
        trust = self.state.trust
        self.trusted = trust is not None and trust.allows(self.address)
        self.state.connections.add(self)
        self.deadline = time.monotonic() + self.state.limits.idle_timeout

    def data_received(self, data: bytes) -> None:
        self._keep(data)
        self._take(data)

    def _take(self, data: bytes) -> None:
        """Parse `data` (or keep it, past an upgrade or an error)."""
        if self._upgrade is not None:
            self._upgrade += data
            return
        if self._error is not None or self._eof_sent:
            return
        if self._raw_body:
            data = self._raw_body_received(data)
        if self._received is None:
            self._keep_from_body_end(data)
        try:
            offset = self.parser.feed(data) if data else None
        except BadRequest as exc:
            self._bad_request(exc)
            if self.queue:
                self._advance()  # the requests before the bad one are answered first
            return
        if offset is not None and not self._upgrade_has_body(data[offset:]):
            self._upgrade = bytearray(data[offset:])
            self._pause_reading()
        if self.queue:
            self._advance()
        reading = self.reading
        if len(self.queue) > 1 or (reading is not None and reading.buffered > READ_PAUSE_BYTES):
            self._pause_reading()

    def eof_received(self) -> bool | None:
        """The client's end of data. TCP cannot tell a half-close from a close until the
        server writes, so the application hears of it as on Tornado (`on_connection_close`),
        and the connection stays open for the answers to the requests sent in full (at most
        the idle timeout), then closes: a client that half-closes still gets them. A request
        cut short, or one the application is still being handed, ends the connection now;
        so does TLS (asyncio's has no half-open state)."""
        partial = self.reading
        if partial is not None and self.queue and partial is not self.queue[0]:
            self.queue.remove(partial)  # never seen by the application
            self.reading = partial = None
        if (
            not self.queue
            or partial is not None
            or not self.queue[0].delegate_done
            or self._upgrade is not None
            or self.transport is None
            or self.transport.get_extra_info("ssl_object") is not None
        ):
            return None
        self._client_done = True
        self.queue[-1].disconnect_on_finish = True  # its answer says so, if not yet sent
        # A client that is gone holds a socket while its handler ignores the close: at most
        # the idle timeout.
        self.deadline = time.monotonic() + self.state.limits.idle_timeout
        self._tell_closed(self.queue[0])
        self._stream_closed()  # as Tornado's IOStream closes at the client's end of data
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.deadline = math.inf
        self._release_waiters()
        if self.queue:
            head = self.queue[0]
            self.queue.clear()
            if head.started and not head.detached:
                self._tell_closed(head)
            head.release()
        self._stream_closed()

    def _stream_closed(self) -> None:
        """Run the callback set through `stream.set_close_callback` (once)."""
        callback, self.stream_close_callback = self.stream_close_callback, None
        if callback is not None:
            asyncio.get_running_loop().call_soon(callback)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_waiters()
        request, self._unsent = self._unsent, None
        if request is not None:
            self.response_finished(request)

    # ParserSink

    def request_parsed(self, start_line: httputil.RequestStartLine, headers: Any) -> None:
        limits = self.state.limits
        request = RequestConnection(
            self,
            start_line,
            headers,
            self.context,
            self._keep_alive(start_line, headers),
            limits.max_body_size,
            limits.body_timeout,
        )
        self._parsed += 1
        request.number = self._parsed
        if not self.queue:
            self.deadline = math.inf
        self.queue.append(request)
        self.reading = request

    def body_received(self, data: bytes) -> None:
        request = self.reading
        if request is not None:
            request.body.append(data)
            request.buffered += len(data)

    def request_complete(self) -> None:
        request = self.reading
        if request is not None:
            request.complete = True
            self.reading = None

    def chunk_announced(self, left: int) -> None:
        request = self.reading
        if request is not None:
            request.body_due = request.body_size + request.buffered + left

    def request_withdrawn(self) -> None:
        request = self.reading
        if request is not None:
            self.queue.remove(request)
            self.reading = None
            self._parsed -= 1

    # ConnectionOwner (for RequestConnection)

    @property
    def closed(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing() or self._eof_sent

    def send(self, data: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.transport.write(data)
        if not self.write_paused:
            return self.state.ready()
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def response_finished(self, request: RequestConnection) -> None:
        if self.write_paused:
            self._unsent = request  # go on once the client has read the response
        elif self._upgrade is not None:
            # A 101 answer is followed by detach(): let it come before parsing goes on.
            asyncio.get_running_loop().call_soon(self._response_done, request)
        else:
            self._response_done(request)

    @property
    def stream(self) -> StreamView:
        assert self.transport is not None
        return StreamView(
            self.transport, self.send, self._set_stream_close_callback, self._client_gone
        )

    def _set_stream_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.stream_close_callback = callback

    def _client_gone(self) -> bool:
        return self._client_done

    def abort_response(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _response_done(self, request: RequestConnection) -> None:
        if request.detached or self.closed or not self.queue or self.queue[0] is not request:
            return
        assert self.transport is not None
        if request.disconnect_on_finish:
            self.transport.close()
            return
        self.queue.popleft().release()
        if self._upgrade is not None and not self.queue:
            # The upgrade request (always the last one read) was answered without taking
            # the connection over: what followed it is HTTP after all.
            leftover, self._upgrade = bytes(self._upgrade), None
            self.parser = RequestParser(self, self.state.limits.max_header_size)
            self._resume_reading()
            if leftover:
                self.data_received(leftover)  # the queue is empty: a request boundary
        if self.queue:
            asyncio.get_running_loop().call_soon(self._advance)
        elif self._error is not None:
            self._answer_error(self._error)
            return
        elif self._client_done:
            self.transport.close()
            return
        else:
            self.deadline = time.monotonic() + self.state.limits.idle_timeout
            if self._received_size > 4096 and self.idle():  # kept for nothing: drop them
                self._received, self._received_size = [], 0
        reading = self.reading
        if (
            self.read_paused
            and len(self.queue) <= 1
            and self._upgrade is None
            and (reading is None or reading.buffered <= READ_PAUSE_BYTES // 2)
        ):
            self._resume_reading()

    # errors, closing, flow control

    def _bad_request(self, exc: BadRequest) -> None:
        """The parser refused the bytes: answer once the requests before are answered."""
        broken = self.reading
        self.reading = None
        if broken is not None and self.queue and broken is not self.queue[0]:
            self.queue.remove(broken)  # queued behind others: never seen by the application
        self._error = exc
        self._pause_reading()
        if not self.queue or self.queue[0] is broken:
            self._answer_error(exc)

    def _answer_error(self, exc: BadRequest) -> None:
        if exc.status == 431:  # Tornado's words when its header read hits the limit
            gen_log.info("Unsatisfiable read, closing connection: %s", exc)
        else:
            gen_log.info("Malformed HTTP message from %s: %s", self.context, exc)
        if self.transport is not None and not self.transport.is_closing():
            line = _REFUSED if exc.announce_close else _STATUS_LINES.get(exc.status)
            self.transport.write(line or _STATUS_LINES[400])
            self.transport.close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def timed_out(self) -> None:
        """Called by the sweep when `deadline` has passed."""
        head = self.queue[0] if self.queue else None
        if head is not None and head.headers_done and not head.read_finished:
            gen_log.info("Timeout reading body from %s", self.context)
        self.deadline = math.inf
        self._close()

    def _keep_alive(self, start_line: httputil.RequestStartLine, headers: Any) -> bool:
        """Whether the connection persists after this request (RFC 9112 section 9.3)."""
        if self.state.draining or self.state.no_keep_alive:
            return False
        options = connection_options(headers["Connection"]) if "Connection" in headers else ()
        if "close" in options:
            return False
        if start_line.version == "HTTP/1.1":
            return True
        if "Transfer-Encoding" in headers:
            return False  # an HTTP/1.0 message's framing is faulty with it (RFC 9112 6.1)
        return "keep-alive" in options and (
            "Content-Length" in headers or start_line.method in ("HEAD", "GET")
        )

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            if self._client_done:
                return  # nothing more to read
            self.read_paused = False
            self.transport.resume_reading()

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def idle(self) -> bool:
        """Between requests, with no partial request read."""
        return not self.queue and not self.parser.in_message and not self.parser.holding

    def half_close(self) -> None:
        """Send FIN and keep reading: the client's close then ends the connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            self._eof_sent = True
            transport.write_eof()
        else:
            transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        if self.transport is not None:
            self.transport.abort()
