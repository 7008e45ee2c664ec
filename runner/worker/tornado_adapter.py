"""Every private attribute of Tornado that tornado-run reads or writes, in one place.

Tornado gives no public way to list a server's connections, to ask whether a connection is
between requests, or whether a handler has sent its headers. Each function here reads one
private attribute directly (no `getattr` default): a Tornado release that renames one makes
the call raise `AttributeError` at once, and `tests/test_tornado_adapter.py` fails with the
attribute's name, instead of the drain silently misjudging a connection.
"""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing this module loads none of Tornado
    from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
    from tornado.httpserver import HTTPServer
    from tornado.httputil import HTTPHeaders
    from tornado.iostream import IOStream
    from tornado.tcpserver import TCPServer
    from tornado.web import RequestHandler


def open_connections(server: HTTPServer) -> set[HTTP1ServerConnection]:
    """The server's open connections (`HTTPServer._connections`), the live set itself."""
    connections: set[HTTP1ServerConnection] = server._connections
    return connections


def accept_handler(server: TCPServer) -> Callable[[socket.socket, Any], None]:
    """What the server does with a socket it accepted (`TCPServer._handle_connection`)."""
    handler: Callable[[socket.socket, Any], None] = server._handle_connection
    return handler


def request_started(conn: HTTP1Connection) -> bool:
    """True once a request's start line has been read (`HTTP1Connection._request_start_line`);
    None between requests."""
    return conn._request_start_line is not None


def response_finished(conn: HTTP1Connection) -> bool:
    """True once the current response is complete (`HTTP1Connection._finish_future`)."""
    return conn._finish_future.done()


def close_after_response(conn: HTTP1Connection) -> None:
    """Close the connection once the current response is written
    (`HTTP1Connection._disconnect_on_finish`). Raises AttributeError if Tornado no longer
    has the attribute, since setting a renamed one would silently do nothing."""
    if "_disconnect_on_finish" not in vars(conn):
        raise AttributeError("HTTP1Connection has no _disconnect_on_finish")
    conn._disconnect_on_finish = True


def keep_open_after_response(conn: HTTP1Connection) -> None:
    """Undo a pending close after the current response (`HTTP1Connection._disconnect_on_finish`),
    so the response is not sent with `Connection: close`. Raises AttributeError as above."""
    if "_disconnect_on_finish" not in vars(conn):
        raise AttributeError("HTTP1Connection has no _disconnect_on_finish")
    conn._disconnect_on_finish = False


def buffered_bytes(stream: IOStream) -> int:
    """Bytes read from the socket and not yet consumed (`BaseIOStream._read_buffer_size`):
    a partial request waiting for the rest of its data."""
    size: int = stream._read_buffer_size
    return size


def headers_written(handler: RequestHandler) -> bool:
    """True once the handler has sent its status line and headers
    (`RequestHandler._headers_written`)."""
    return bool(handler._headers_written)


def response_headers(handler: RequestHandler) -> HTTPHeaders:
    """The headers the handler set for its response (`RequestHandler._headers`), with
    Content-Length once `finish()` has computed it."""
    headers: HTTPHeaders = handler._headers
    return headers


def handler_finished(handler: RequestHandler) -> bool:
    """True once `finish()` has run (`RequestHandler._finished`)."""
    return bool(handler._finished)


def before_overflow_close(stream: IOStream, callback: Callable[[IOStream], None]) -> None:
    """Have `callback(stream)` run, while the socket is still open, when Tornado closes the
    stream because a bounded read overflowed: its read paths call
    `self.close(exc_info=UnsatisfiableReadError(...))` and write nothing to the peer. Wraps
    this stream's own `close`; other closes pass straight through."""
    from tornado.iostream import UnsatisfiableReadError

    close = stream.close

    def closing(exc_info: Any = False) -> None:
        if isinstance(exc_info, UnsatisfiableReadError):
            callback(stream)
        close(exc_info)

    stream.close = closing  # type: ignore[method-assign]


def is_tls_connection_error(record: logging.LogRecord) -> bool:
    """True when `record` is a warning Tornado logs on `tornado.general` for one TLS
    connection: a failed handshake (`SSLIOStream._do_ssl_handshake`, "SSL Error on ...") or a
    TLS-level write error ("Write error on ..." with an `ssl.SSLError`, e.g. a write after the
    drain's close_notify). The format strings are matched exactly."""
    args = record.args
    if not isinstance(args, tuple):
        return False
    if record.msg == "SSL Error on %s %s: %s":
        return len(args) == 3
    return record.msg == "Write error on %s: %s" and isinstance(args[-1], ssl.SSLError)


def is_closed_websocket_write(record: logging.LogRecord) -> bool:
    """True when `record` reports a `WebSocketClosedError`: how Tornado logs a handler's
    `write_message` on a closing connection raised out of `on_message` (on `tornado.application`:
    `RequestHandler.log_exception`'s "Uncaught exception", or before Tornado 6.4 for a
    coroutine, the IOLoop's "Exception in callback"), or asyncio an app task's."""
    from tornado.websocket import WebSocketClosedError

    return record.exc_info is not None and isinstance(record.exc_info[1], WebSocketClosedError)


# The fast HTTP server drives Tornado's delegates itself and reuses these private pieces of
# Tornado's HTTPServer, so that remote_ip/protocol, forwarded headers, plain-callable apps and
# gzip request bodies behave exactly as with Tornado's own server.


class _SocketFamily:
    """The one thing `_HTTPRequestContext` reads from a stream: `stream.socket.family`."""

    def __init__(self, family: int) -> None:
        self.socket = self
        self.family = family


def request_context(
    family: int, address: Any, protocol: str, trusted_downstream: tuple[str, ...] = ()
) -> Any:
    """A `tornado.httpserver._HTTPRequestContext` for a connection from `address` on a socket
    of `family`: what `HTTPServerRequest` reads `remote_ip` and `protocol` from."""
    from tornado.httpserver import _HTTPRequestContext

    stream: Any = _SocketFamily(family)
    return _HTTPRequestContext(stream, address, protocol, list(trusted_downstream))


def apply_forwarded(context: Any, headers: Any) -> None:
    """Rewrite the context's remote_ip/protocol from X-Forwarded-For/-Proto, X-Real-Ip and
    X-Scheme (`_HTTPRequestContext._apply_xheaders`), as Tornado's `xheaders=True` does."""
    context._apply_xheaders(headers)


def unapply_forwarded(context: Any) -> None:
    """Undo `apply_forwarded` so the next request on the connection starts from the peer
    (`_HTTPRequestContext._unapply_xheaders`)."""
    context._unapply_xheaders()


def callable_delegate(callback: Callable[[Any], None], request_conn: Any) -> Any:
    """The message delegate Tornado's HTTPServer uses for a plain `callback(request)` app
    (`tornado.httpserver._CallableAdapter`)."""
    from tornado.httpserver import _CallableAdapter

    return _CallableAdapter(callback, request_conn)


def checked_headers(pairs: list[tuple[str, str]]) -> HTTPHeaders:
    """`HTTPHeaders` from (name, value) pairs whose characters the parser has already
    checked, filled through its private dicts (`HTTPHeaders._as_list`, `_combined_cache`,
    `httputil._normalize_header`): twice as fast as `add()`, which checks them again since
    Tornado 6.5. Older releases (no `_combined_cache`, an `add()` that checks nothing) get
    the public path."""
    from tornado.httputil import HTTPHeaders, _normalize_header

    headers = HTTPHeaders()
    if not _headers_cache_combined():
        for name, value in pairs:
            headers.add(name, value)
        return headers
    as_list = headers._as_list
    combined = headers._combined_cache
    for name, value in pairs:
        key = _normalize_header(name)
        if key in as_list:
            headers.add(key, value)  # repeated: joined with a comma when read, as add() does
        else:
            as_list[key] = [value]
            combined[key] = value
    return headers


def gzip_delegate(delegate: Any, chunk_size: int, max_body_size: int) -> Any:
    """Wrap a message delegate to decode `Content-Encoding: gzip` request bodies
    (`tornado.http1connection._GzipMessageDelegate`; before Tornado 6.5 it takes no
    decompressed-size limit)."""
    from tornado.http1connection import _GzipMessageDelegate

    if _gzip_takes_limit():
        return _GzipMessageDelegate(delegate, chunk_size, max_body_size)
    return _GzipMessageDelegate(delegate, chunk_size)  # type: ignore[call-arg,unused-ignore]


@functools.cache
def _headers_cache_combined() -> bool:
    from tornado.httputil import HTTPHeaders

    return "_combined_cache" in vars(HTTPHeaders())


@functools.cache
def _gzip_takes_limit() -> bool:
    from tornado.http1connection import _GzipMessageDelegate

    return "max_body_size" in inspect.signature(_GzipMessageDelegate).parameters
