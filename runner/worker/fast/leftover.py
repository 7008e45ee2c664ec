"""What a client sent after a request, for `detach()`: Tornado's IOStream still holds those
bytes when a handler takes the connection over, where the fast server's parser may already
have read them as further requests. They are found in the packets the connection keeps
from a request boundary on, by parsing those again."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from .ends import request_end
from .parsing import RequestParser
from .state import READ_PAUSE_BYTES

if TYPE_CHECKING:
    from .connection import RequestConnection

KEPT_BYTES = READ_PAUSE_BYTES + (1 << 20)
"""Most bytes a connection keeps to find where a detached request ends: more than can
arrive while a request waits (reading pauses at READ_PAUSE_BYTES), so a detach before the
body is read always finds them."""


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
    new_parser = partial(RequestParser, max_header_size=max_header_size)
    end = request_end(received, number, with_body, new_parser)
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
