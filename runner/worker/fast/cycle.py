"""`RequestCycle`: how a client connection takes its first request through Tornado's
delegate: `start_request`, `headers_received` (then 100-continue and the body-size check),
`data_received` per body piece, `finish`, and `on_connection_close` or the close callback
when the client leaves. A delegate method that returns an awaitable pauses the cycle until
it resolves; errors are answered as Tornado's HTTP1Connection answers them."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from tornado import gen, httputil
from tornado.log import app_log

from .. import tornado_adapter as tornado
from .connection import RequestConnection
from .refusal import BadRequest
from .state import READ_PAUSE_BYTES, ServerState

_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


class RequestCycle:
    """The delegate side of a client connection (`ClientConnection` is the rest)."""

    state: ServerState
    transport: asyncio.Transport | None
    queue: deque[RequestConnection]
    context: Any
    trusted: bool
    deadline: float
    read_paused: bool
    _upgrade: bytearray | None

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def _answer_error(self, exc: BadRequest) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _resume_reading(self) -> None:
        raise NotImplementedError

    def _advance(self) -> None:
        """Take the first request as far as it can go without waiting."""
        while self.queue and not self.closed:
            request = self.queue[0]
            if request.waiting or request.detached:
                return
            if not request.started:
                self._start(request)
            elif not request.headers_done:
                return
            elif request.body:
                self._deliver(request)
            elif request.complete and not request.read_finished:
                self._finish_reading(request)
                return
            else:
                return

    def _start(self, request: RequestConnection) -> None:
        state = self.state
        state.requests += 1
        request.started = True
        try:
            if state.is_delegate:
                app: Any = state.app
                delegate = app.start_request(self, request)
            else:
                delegate = tornado.callable_delegate(state.app, request)  # type: ignore[arg-type]
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
            self._close()
            return
        if state.decompress:
            limits = state.limits
            delegate = tornado.gzip_delegate(delegate, limits.chunk_size, request.max_body_size)
        request.delegate = delegate
        if self.trusted:
            tornado.apply_forwarded(self.context, request.headers)
        self._call(
            request,
            delegate.headers_received,
            self._headers_received,
            request.start_line,
            request.headers,
        )

    def _headers_received(self, request: RequestConnection) -> None:
        request.headers_done = True
        if request.detached or self.closed:
            return
        assert self.transport is not None
        headers = request.headers  # `in` first: HTTPHeaders.get is a slow Mapping method
        if (
            "Expect" in headers
            and headers["Expect"].lower() == "100-continue"  # case-insensitive (RFC 9110 10.1.1)
            and request.start_line.version == "HTTP/1.1"  # a 1.0 client's is ignored (same)
            and not request.write_finished
        ):
            self.transport.write(_CONTINUE)
        if "Content-Length" in headers and int(headers["Content-Length"]) > request.max_body_size:
            self._answer_error(_refused("Content-Length too long"))
            return
        if request.body_due > request.max_body_size:
            self._answer_error(_refused("chunked body too large"))
            return
        if not request.complete:
            self.deadline = time.monotonic() + request.body_timeout

    def _deliver(self, request: RequestConnection) -> None:
        data = _next_piece(request.body, self.state.limits.chunk_size)
        request.buffered -= len(data)
        request.body_size += len(data)
        if max(request.body_size, request.body_due) > request.max_body_size:
            self._answer_error(_refused("chunked body too large"))
            return
        if (
            self.read_paused
            and request.buffered <= READ_PAUSE_BYTES // 2
            and self._upgrade is None
            and len(self.queue) <= 1
        ):
            self._resume_reading()
        if request.write_finished:
            return  # answered already: the rest of the body is not for the application
        assert request.delegate is not None
        self._call(request, request.delegate.data_received, None, data)

    def _finish_reading(self, request: RequestConnection) -> None:
        request.read_finished = True
        self.deadline = math.inf
        delegate = request.delegate
        assert delegate is not None
        if not request.write_finished:
            try:
                delegate.finish()
            except httputil.HTTPInputError as exc:
                self._answer_error(_refused(str(exc)))
                return
            except Exception:
                app_log.error("Uncaught exception", exc_info=True)
                self._close()
                return
        request.delegate_done = True
        if self.trusted:
            tornado.unapply_forwarded(self.context)

    # delegate calls

    def _call(
        self,
        request: RequestConnection,
        method: Callable[..., Any],
        then: Callable[[RequestConnection], None] | None,
        *args: Any,
    ) -> None:
        """Call a delegate method; wait (reading paused for this request) on what it
        returns, then run `then`. Errors are answered as Tornado answers them."""
        try:
            result = method(*args)
        except Exception as exc:
            self._delegate_error(request, exc)
            return
        if result is not None:
            future = gen.convert_yielded(result)
            if not future.done():
                request.waiting = True
                future.add_done_callback(partial(self._awaited, request, then))
                return
            if future.exception() is not None:
                self._delegate_error(request, future.exception())
                return
        if then is not None:
            then(request)

    def _awaited(
        self,
        request: RequestConnection,
        then: Callable[[RequestConnection], None] | None,
        future: asyncio.Future[Any],
    ) -> None:
        request.waiting = False
        if self.closed or request.detached:
            return
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            self._delegate_error(request, exc)
            return
        if then is not None:
            then(request)
        self._advance()

    def _delegate_error(self, request: RequestConnection, exc: BaseException | None) -> None:
        if isinstance(exc, httputil.HTTPInputError):
            self._answer_error(_refused(str(exc)))
            return
        if exc is not None:
            app_log.error("Uncaught exception", exc_info=exc)
        self._close()

    def _tell_closed(self, request: RequestConnection) -> None:
        """The client is gone while `request` was read (its delegate hears it) or while
        its response was being made (its close callback runs)."""
        if not request.delegate_done:
            if request.delegate is not None:
                try:
                    request.delegate.on_connection_close()
                except Exception:
                    app_log.error("Uncaught exception", exc_info=True)
            if self.trusted:
                tornado.unapply_forwarded(self.context)
        elif not request.write_finished and request.close_callback is not None:
            callback, request.close_callback = request.close_callback, None
            callback()


def _refused(reason: str) -> BadRequest:
    """A 400 for a request already parsed: it announces the close (RFC 9112 section 9.6),
    since the client may still be sending a body the server will not read."""
    return BadRequest(reason, announce_close=True)


def _next_piece(body: list[bytes], chunk_size: int) -> bytes:
    """Take the next body piece to hand over: at most `chunk_size` bytes, small pieces
    (say tiny chunks of a chunked body) joined, as Tornado's HTTP1Connection does."""
    first = body[0]
    if len(first) > chunk_size:  # split once; the rest waits in order
        body[:1] = [first[i : i + chunk_size] for i in range(0, len(first), chunk_size)]
        return body.pop(0)
    count, total = 1, len(first)
    while count < len(body) and total + len(body[count]) <= chunk_size:
        total += len(body[count])
        count += 1
    if count == 1:
        return body.pop(0)
    data = b"".join(body[:count])
    del body[:count]
    return data
