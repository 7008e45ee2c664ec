"""What a client sent after a request, for `detach()`: Tornado's IOStream still holds those
bytes when a handler takes the connection over, where the fast server's parser may already
have read them as further requests. They are found in the packets the connection keeps
from a request boundary on, by parsing those again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado.httputil import HTTPHeaders, RequestStartLine

from .parsing import BadRequest, RequestParser
from .state import READ_PAUSE_BYTES

if TYPE_CHECKING:
    from .connection import RequestConnection

KEPT_BYTES = READ_PAUSE_BYTES + (1 << 20)
"""Most bytes a connection keeps to find where a detached request ends: more than can
arrive while a request waits (reading pauses at READ_PAUSE_BYTES), so a detach before the
body is read always finds them."""


class _Counter:
    """A `ParserSink` that counts header blocks and ends of requests."""

    def __init__(self) -> None:
        self.heads = 0
        self.ends = 0

    def request_parsed(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        self.heads += 1

    def body_received(self, data: bytes) -> None:
        pass

    def request_complete(self) -> None:
        self.ends += 1

    def request_withdrawn(self) -> None:
        self.heads -= 1


def request_end(
    packets: list[bytes], number: int, with_body: bool, max_header_size: int
) -> int | None:
    """Where request `number` (counted from 1) of `packets` (a client's bytes as they
    arrived, from the first byte of a request on) ends: after its body, or with `with_body`
    false after its header block. None if it does not end in them.

    httptools does not say where in a packet a request ends, so the packets are parsed
    again as they arrived: once to find the packet it ends in, then that packet's prefixes
    (a binary search), each time from the last packet that began between requests."""
    counter = _Counter()
    parser = RequestParser(counter, max_header_size)
    start = counted = offset = 0  # a packet that began between requests, count before it
    for index, packet in enumerate(packets):
        if not parser.in_message and not parser.holding:
            start, counted = index, _count(counter, with_body)
        stopped = _feed(parser, packet)
        if _count(counter, with_body) >= number:
            low, high = 0, len(packet)
            while low < high:
                middle = (low + high) // 2
                found = _replay(packets[start:index], packet[:middle], with_body, max_header_size)
                if counted + found >= number:
                    high = middle
                else:
                    low = middle + 1
            return offset + low
        if stopped:
            return None
        offset += len(packet)
    return None


def _count(counter: _Counter, with_body: bool) -> int:
    return counter.ends if with_body else counter.heads


def _feed(parser: RequestParser, data: bytes) -> bool:
    """Parse `data`; True if parsing stops there (an upgrade, or bytes refused)."""
    try:
        return parser.feed(data) is not None
    except BadRequest:
        return True


def _replay(before: list[bytes], last: bytes, with_body: bool, max_header_size: int) -> int:
    """How many requests a fresh parser counts in `before` then `last`."""
    counter = _Counter()
    parser = RequestParser(counter, max_header_size)
    for packet in [*before, last]:
        if _feed(parser, packet):
            break
    return _count(counter, with_body)


def bytes_after(
    request: RequestConnection, received: list[bytes] | None, first: int, max_header_size: int
) -> bytes | None:
    """The bytes of `received` (packets kept since the end of request number `first`)
    after `request`, or after its header block if its body was not read; None if they
    cannot be located (not kept, or after a chunked body partly read)."""
    if received is None:
        return None
    number = request.number - first
    if number == 0:  # kept from right after the request
        return b"".join(received)
    with_body = request.read_finished
    read = request.body_size  # what the handler read of the body, if not all
    if number < 0 or (not with_body and read and "Transfer-Encoding" in request.headers):
        return None
    end = request_end(received, number, with_body, max_header_size)
    if end is None:
        return None
    if not with_body:
        end += read  # raw bytes: the body has a Content-Length
    return b"".join(received)[end:]


def body_end(request: RequestConnection | None, data: bytes) -> int | None:
    """Where in `data`, the next bytes of `request`'s body, that body ends, if it has a
    Content-Length and ends there."""
    if request is None or "Content-Length" not in request.headers:
        return None
    end = int(request.headers["Content-Length"]) - request.buffered - request.body_size
    return end if 0 <= end <= len(data) else None
