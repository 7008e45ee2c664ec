"""What the fast server says when it refuses a request's bytes: `BadRequest` (the status,
and whether the answer announces the close) and, for the log, the reason Tornado's own
parser gives for the same mistake."""

from __future__ import annotations

import re

import httptools

BAD_LINE = "Malformed HTTP request line"
_REQUEST_LINE_ERRORS = ("method", "URL", "url", "HTTP version", "after version", "Expected HTTP")


def _header_values(data: bytes, name: bytes) -> list[str]:
    pattern = re.compile(rb"(?im)^" + name + rb":[ \t]*([^\r\n]*?)[ \t]*\r?$")
    return [value.decode("latin1") for value in pattern.findall(data)]


def tornado_reason(exc: Exception, data: bytes) -> str:
    """What Tornado's parser logs for the same mistake (operators grep for these)."""
    message = str(exc)
    if isinstance(exc, httptools.HttpParserInvalidMethodError) or any(
        part in message for part in _REQUEST_LINE_ERRORS
    ):
        return BAD_LINE
    if "Transfer-Encoding" in message and "Content-Length" in message:
        return "Message with both Transfer-Encoding and Content-Length"
    if "Content-Length" in message:
        values = _header_values(data, b"content-length")
        if "Duplicate" in message or any("," in value for value in values):
            return f"Multiple unequal Content-Lengths: {', '.join(values)!r}"
        return f"Only integer Content-Length is allowed: {', '.join(values)}"
    if "Transfer-Encoding" in message:
        return (
            f"Unsupported Transfer-Encoding {','.join(_header_values(data, b'transfer-encoding'))}"
        )
    if "chunk size" in message:
        return "invalid chunk size"
    if "header token" in message:
        return "no colon in header line"
    return message or type(exc).__name__


class BadRequest(Exception):
    """The client sent something this server will not serve: answer `status`, then close.
    With `announce_close` the answer says `Connection: close` (a request refused after its
    headers were read, its body perhaps still coming); a malformed message gets Tornado's
    bare status line."""

    def __init__(self, reason: str, status: int = 400, *, announce_close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.announce_close = announce_close
