"""`RequestConnection`: Tornado's `HTTPConnection` interface for one request on a fast-server
connection. The application writes its response through it (status line and headers, body
pieces, chunked framing when there is no Content-Length, keep-alive decisions), exactly as
it would through Tornado's `HTTP1Connection`."""

from __future__ import annotations

from asyncio import Future
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from tornado import httputil, iostream
from tornado.http1connection import parse_int

if TYPE_CHECKING:
    from tornado.httputil import HTTPHeaders, HTTPMessageDelegate, RequestStartLine


class ConnectionOwner(Protocol):
    """The client connection a request belongs to, as its `RequestConnection` sees it."""

    @property
    def closed(self) -> bool:
        """The transport is closing or closed."""
        ...

    def send(self, data: bytes) -> Future[None]:
        """Write `data`; the future resolves once the transport accepts more (flow control)."""
        ...

    def response_finished(self, request: RequestConnection) -> None:
        """The application has written the whole response to `request`."""
        ...

    def abort_response(self) -> None:
        """Close the connection at once: the response cannot be framed correctly."""
        ...

    def detach(self, request: RequestConnection) -> Any:
        """Stop HTTP processing and hand the transport (and unread bytes) to the caller."""
        ...

    @property
    def stream(self) -> Any:
        """An IOStream-like view of the connection (`request.connection.stream`)."""
        ...


def connection_options(value: str) -> list[str]:
    """The lower-cased options of a `Connection` field value (a comma-separated token list,
    RFC 9110 section 7.6.1): `TE, close` holds `close`."""
    return [option.strip(" \t").lower() for option in value.split(",")]


def _closed_future() -> Future[None]:
    future: Future[None] = Future()
    future.set_exception(iostream.StreamClosedError())
    future.exception()  # retrieved: a write after a disconnect is not an error to log
    return future


class RequestConnection(httputil.HTTPConnection):
    """One request and its response; `context` gives `HTTPServerRequest` the peer's
    remote_ip and protocol."""

    # The state flags start as class attributes: an instance stores only those that change
    # (one request object is made per request, so its construction is on the hot path).
    delegate: HTTPMessageDelegate | None = None
    close_callback: Callable[[], None] | None = None
    # Reading, filled in by the client connection as the parser goes.
    buffered = 0
    body_size = 0
    body_due = 0  # the least size a chunked body will reach, by the chunk sizes read
    complete = False
    started = False
    headers_done = False
    waiting = False  # on a future a delegate method returned
    read_finished = False
    delegate_done = False  # delegate.finish() returned
    # Writing.
    headers_written = False
    write_finished = False
    chunking = False
    remaining: int | None = None
    detached = False
    number = 0  # of the request on its connection, counted from 1
    taken_by: Any = None  # the stream detach() returned

    def __init__(
        self,
        owner: ConnectionOwner,
        start_line: RequestStartLine,
        headers: HTTPHeaders,
        context: Any,
        keep_alive: bool,
        max_body_size: int,
        body_timeout: float,
    ) -> None:
        self.owner = owner
        self.start_line = start_line
        self.headers = headers
        self.context = context
        self.disconnect_on_finish = not keep_alive
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self.body: list[bytes] = []

    # httputil.HTTPConnection

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        """Send the status line and headers (and a first body piece, in the same write)."""
        assert isinstance(start_line, httputil.ResponseStartLine)
        request = self.start_line
        code = start_line.code
        self.headers_written = True
        bodiless = request.method == "HEAD" or code in (204, 304) or 100 <= code < 200
        self.chunking = (
            request.version == "HTTP/1.1" and not bodiless and "Content-Length" not in headers
        )
        if "Connection" in headers and "close" in connection_options(headers["Connection"]):
            self.disconnect_on_finish = True  # a server that sends "close" closes (RFC 9112 9.6)
        elif not self.read_finished:
            self.disconnect_on_finish = True  # only a close skips the unread body (RFC 9112 9.3)
        if request.version == "HTTP/1.1":
            # A 101 keeps its `Connection: Upgrade` (a WebSocket client refuses the handshake
            # without it); the connection leaves HTTP either way.
            if self.disconnect_on_finish and code != 101:
                headers["Connection"] = "close"
        elif not self.disconnect_on_finish:
            if bodiless or "Content-Length" in headers:
                headers["Connection"] = "Keep-Alive"
            else:  # a body without a length ends with the connection (RFC 9112 6.3)
                self.disconnect_on_finish = True
        if self.chunking:
            headers["Transfer-Encoding"] = "chunked"
        if request.method == "HEAD" or code == 304:
            self.remaining = 0
        elif "Content-Length" in headers:
            self.remaining = parse_int(headers["Content-Length"])
        else:
            self.remaining = None
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines.extend([f"{name}: {value}" for name, value in headers.get_all()])
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            raise ValueError(f"Illegal characters (CR or LF) in header: {text!r}")
        if self.owner.closed:
            return _closed_future()
        data = text.encode("latin1") + b"\r\n\r\n"
        if chunk:
            data += self._frame(chunk)
        return self.owner.send(data)

    def write(self, chunk: bytes) -> Future[None]:
        """Send a body piece (framed as a chunk when the response is chunked)."""
        if self.owner.closed:
            return _closed_future()
        return self.owner.send(self._frame(chunk))

    def finish(self) -> None:
        """The response is complete: end the chunked body, then let the connection go on
        to the next request (or close, if this response ends it)."""
        if self.remaining and not self.owner.closed:
            missing = self.remaining
            self.owner.abort_response()
            raise httputil.HTTPOutputError(
                f"Tried to write {missing} bytes less than Content-Length"
            )
        if self.chunking and not self.owner.closed:
            self.owner.send(b"0\r\n\r\n")
        self.write_finished = True
        if not self.read_finished:
            # Not reading the rest of the body: closing is the only way to skip it.
            self.disconnect_on_finish = True
        self.owner.response_finished(self)

    def _frame(self, chunk: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                self.owner.abort_response()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self.chunking and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    # What Tornado's HTTP1Connection offers beyond the interface, used by web and websocket.

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """Run `callback` if the client disconnects after its request was read and before
        the response is finished."""
        self.close_callback = callback

    def set_body_timeout(self, timeout: float) -> None:
        """Seconds this request's body may take to arrive (overrides --body-timeout)."""
        self.body_timeout = timeout

    def set_max_body_size(self, max_body_size: int) -> None:
        """Largest body this request may have (overrides --max-body-size)."""
        self.max_body_size = max_body_size

    def detach(self) -> Any:
        """Stop HTTP processing on this connection and return an IOStream-compatible
        stream over its transport, seeded with the bytes the client sent after this
        request (after its header block if its body was not read)."""
        self.taken_by = self.owner.detach(self)
        return self.taken_by

    @property
    def stream(self) -> Any:
        """What `request.connection.stream` gives on Tornado's server, as far as
        applications use it: write(), close(), closed(), set_close_callback(),
        set_nodelay(), fileno(), socket; after `detach()`, the stream it returned."""
        return self.taken_by if self.detached else self.owner.stream

    def release(self) -> None:
        """Drop the references to the application's objects once the request is over: the
        handler refers back to this connection, and the cycle would wait for the GC."""
        self.delegate = None
        self.close_callback = None
        self.body = []

    @property
    def busy(self) -> bool:
        """Headers read, response not finished."""
        return self.started and not self.write_finished and not self.detached
