"""`Handover`: what a client connection does for a request that takes the connection
over or might: `detach()` hands the transport to a `TransportStream` with the bytes the
client sent after the request, found in the packets kept since a request boundary (see
leftover.py); a request with `Upgrade:` and a body is served as a plain request."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

from tornado.httputil import RequestStartLine
from tornado.log import gen_log

from .connection import RequestConnection
from .leftover import KEPT_BYTES, body_end, bytes_after
from .parsing import CHUNKED_STAND_IN, RequestParser
from .refusal import BadRequest
from .state import ServerState
from .stream import TransportStream


class Handover:
    """The detach and upgrade side of a client connection (`ClientConnection` is the rest)."""

    state: ServerState
    transport: asyncio.Transport | None
    parser: RequestParser
    queue: deque[RequestConnection]
    reading: RequestConnection | None
    deadline: float
    read_paused: bool
    _upgrade: bytearray | None
    _error: BadRequest | None
    _raw_body: int
    _received: list[bytes] | None
    _received_size: int
    _received_from: int
    _parsed: int

    def _take(self, data: bytes) -> None:
        raise NotImplementedError

    def request_parsed(self, start_line: RequestStartLine, headers: Any) -> None:
        raise NotImplementedError

    def body_received(self, data: bytes) -> None:
        raise NotImplementedError

    def request_complete(self) -> None:
        raise NotImplementedError

    def request_withdrawn(self) -> None:
        raise NotImplementedError

    def chunk_announced(self, left: int) -> None:
        raise NotImplementedError

    def _keep(self, data: bytes) -> None:
        """Keep `data` for a detach() (see `_unparsed`), up to KEPT_BYTES."""
        parser = self.parser
        if self.queue or parser.in_message or parser.holding:
            received = self._received
            if received is not None:
                self._received_size += len(data)
                if self._received_size <= KEPT_BYTES and not self._body_taken():
                    received.append(data)
                else:
                    self._received = None
        else:  # a request boundary: no request before these bytes can be detached
            self._received = [data]
            self._received_size = len(data)
            self._received_from = self._parsed

    def _body_taken(self) -> bool:
        """The handler has begun to take the Content-Length body being read: what it
        leaves need not be kept, and `_keep_from_body_end` finds where the body ends."""
        request = self.reading
        return (
            request is not None
            and request.body_size > 0
            and "Transfer-Encoding" not in request.headers
        )

    def _keep_from_body_end(self, data: bytes) -> None:
        """With no bytes kept (a large body), start keeping them again where the body
        being read ends, if it has a length and ends in `data`."""
        end = body_end(self.reading, data)
        if end is not None and self.reading is not None:
            self._received = [data[end:]]
            self._received_size = len(data) - end
            self._received_from = self.reading.number

    def _upgrade_has_body(self, rest: bytes) -> bool:
        """llhttp stops at the headers of a request with `Upgrade:`. One with a body (say
        `Upgrade: h2c` on a POST) is served as a plain request: its body is taken from the
        bytes that follow, and parsing goes on after it."""
        request = self.queue[-1] if self.queue else None
        if request is None:
            return False
        length = request.headers.get("Content-Length", "0")
        if "Transfer-Encoding" not in request.headers and length == "0":
            return False
        self.parser = RequestParser(self, self.state.limits.max_header_size)
        request.complete = False
        self.reading = request
        if "Transfer-Encoding" in request.headers:
            self.parser.expect_chunked_body()
            # Kept from here, behind the headers the parser was primed with (standing in
            # for this request's), so the kept bytes parse again as they were read.
            self._received = [CHUNKED_STAND_IN + rest]
            self._received_size = len(rest)
            self._received_from = request.number - 1
            if rest:
                self._take(rest)
            return True
        self._raw_body = int(length)
        rest = self._raw_body_received(rest)
        if rest:
            self._take(rest)
        return True

    def _raw_body_received(self, data: bytes) -> bytes:
        """Take the body of an upgrade-with-body request from `data`; return the rest."""
        piece = data[: self._raw_body]
        self._raw_body -= len(piece)
        self.body_received(piece)
        rest = data[len(piece) :]
        if not self._raw_body:
            self.request_complete()
            self._received = [rest]  # a request boundary, right after the request
            self._received_size = len(rest)
            self._received_from = self._parsed
        return rest

    def detach(self, request: RequestConnection) -> Any:
        assert self.transport is not None
        request.detached = True
        if self._upgrade is not None and self.queue[-1] is request:
            leftover = bytes(self._upgrade)
        else:
            leftover = self._unparsed(request)
        self._upgrade = None
        self.queue.clear()
        self.deadline = math.inf
        self.state.connections.discard(self)
        self.read_paused = False  # reading is the stream's business from here on
        stream = TransportStream(self.transport, leftover)
        request.release()
        return stream

    def _unparsed(self, request: RequestConnection) -> bytes:
        """The bytes the client sent after `request` (see `leftover.bytes_after`)."""
        limit = self.state.limits.max_header_size
        leftover = bytes_after(request, self._received, self._received_from, limit)
        if leftover is None:
            if self._parsed_past(request):
                gen_log.warning("Bytes received after a detached request are lost: too many")
            return b""
        return leftover

    def _parsed_past(self, request: RequestConnection) -> bool:
        """Whether bytes after `request` (other than blank lines) were read."""
        parser = self.parser
        return (
            len(self.queue) > 1
            or not request.complete
            or parser.in_message
            or parser.holding
            or self._error is not None
            or self._upgrade is not None
        )
