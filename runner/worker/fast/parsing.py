"""Request parsing with httptools (llhttp), made to accept and refuse what Tornado's own
HTTP/1 parser does: bare LF line endings pass, a method token llhttp does not know reaches
the application (which answers 405), and every framing that could smuggle a request (both
Content-Length and Transfer-Encoding, two Content-Lengths, a transfer coding other than
chunked, a bad chunk size) is refused."""

from __future__ import annotations

import re
from typing import NoReturn, Protocol

import httptools
from tornado.httputil import HTTPHeaders, RequestStartLine

from .. import tornado_adapter as tornado

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BARE_LF_ERROR = "Expected CRLF after version"
"""llhttp's error for a request line ended by a bare LF (its leniency covers headers only)."""
_LINE_OVERHEAD = 4  # ": " and CRLF around each header line
_METHODS: dict[bytes, str] = {}
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


_BAD_LINE = "Malformed HTTP request line"
_REQUEST_LINE_ERRORS = ("method", "URL", "url", "HTTP version", "after version", "Expected HTTP")


def _header_values(data: bytes, name: bytes) -> list[str]:
    pattern = re.compile(rb"(?im)^" + name + rb":[ \t]*([^\r\n]*?)[ \t]*\r?$")
    return [value.decode("latin1") for value in pattern.findall(data)]


def _tornado_reason(exc: Exception, data: bytes) -> str:
    """What Tornado's parser logs for the same mistake (operators grep for these)."""
    message = str(exc)
    if isinstance(exc, httptools.HttpParserInvalidMethodError) or any(
        part in message for part in _REQUEST_LINE_ERRORS
    ):
        return _BAD_LINE
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
    """The client sent something this server will not serve: answer `status`, then close."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class ParserSink(Protocol):
    """Who receives what the parser reads, in order."""

    def request_parsed(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        """A request's start line and headers were read."""

    def body_received(self, data: bytes) -> None:
        """A piece of the current request's body (already de-chunked)."""

    def request_complete(self) -> None:
        """The current request has been read to its end."""


def _new_parser(callbacks: object) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(callbacks)
    # Tornado accepts a bare LF as a line ending (RFC 9112 section 2.2 allows it).
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
    return parser


class RequestParser:
    """Feeds bytes to llhttp and reports requests to a `ParserSink`."""

    def __init__(self, sink: ParserSink, max_header_size: int) -> None:
        self.sink = sink
        self.max_header_size = max_header_size
        self.in_message = False
        """A request has begun and has not been read to its end."""
        self._parser = _new_parser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_size = 0
        self._header_bytes = 0
        self._headers_done = False
        self._completed = False
        self._method_override: str | None = None
        self._held = b""
        self._line = b""
        self._reparsing = False
        self._error: BadRequest | None = None

    @property
    def holding(self) -> bool:
        """The start of a request line is kept, waiting for the rest."""
        return bool(self._held)

    def feed(self, data: bytes) -> int | None:
        """Parse `data`. Returns None, or, for a request that upgrades the connection, the
        offset in `data` where the other protocol's bytes begin. Raises `BadRequest`."""
        past = self._parse(self._held + data if self._held else data)
        if past is None:
            return None
        if past > len(data):  # the upgrade ends inside bytes of an earlier packet
            raise BadRequest(_BAD_LINE)
        return len(data) - past

    def _parse(self, data: bytes) -> int | None:
        """Parse `data`; for an upgrade, return how many bytes of `data` follow the
        request. Every buffer parsed again (held bytes in front, leading blank lines
        dropped, the method or line end rewritten) ends with the caller's bytes, so a count
        from the end is exact in all of them, where an offset from the start is not."""
        self._held = b""
        # A request line that arrives in pieces is kept until its end is parsed, in case
        # llhttp refuses it and it must be parsed again (see `_reparse`).
        began_idle = not self.in_message
        start = data if began_idle else self._line + data if self._line else b""
        self._completed = False
        if not self._headers_done:
            self._header_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            return len(data) - int(exc.args[0])
        except httptools.HttpParserError as exc:
            error, self._error = self._error, None
            if error is not None:
                raise error from None
            unknown_method = isinstance(exc, httptools.HttpParserInvalidMethodError)
            bare_lf = str(exc) == _BARE_LF_ERROR
            if (unknown_method or bare_lf) and start and not self._completed:
                self._line = b""
                return self._reparse(start, unknown_method)
            raise BadRequest(_tornado_reason(exc, self._line + data)) from None
        if self.in_message and not self._headers_done:
            if self._header_bytes > self.max_header_size:
                raise BadRequest("request headers too large", 431)
            self._line = start if not self._headers and not self._completed else b""
        elif self._line:
            self._line = b""
        return None

    def _reparse(self, data: bytes, unknown_method: bool) -> int | None:
        """Parse again a request whose request line llhttp refused where Tornado accepts it:
        a bare LF ending the line, or a method token llhttp does not know (parsed under a
        stand-in, and reported as sent: the application answers 405, as with Tornado).
        `data` holds the request from its first byte; returns as `_parse` does."""
        text = data.lstrip(b"\r\n")
        token = text.partition(b" ")[0].partition(b"\n")[0].removesuffix(b"\r")
        if unknown_method and not _TOKEN.fullmatch(token):
            raise BadRequest(_BAD_LINE)
        eol = text.find(b"\n")
        if eol < 0:
            if len(text) > self.max_header_size:
                raise BadRequest("request headers too large", 431)
            self._restart()
            self._held = text  # wait for the end of the request line
            return None
        line = text[:eol].removesuffix(b"\r")
        if self._reparsing:
            raise BadRequest(_BAD_LINE)
        if unknown_method:
            token, space, rest = line.partition(b" ")
            if not space or not _TOKEN.fullmatch(token):
                raise BadRequest(_BAD_LINE)
            self._method_override = token.decode("latin1")
            line = b"GET " + rest
        self._restart()
        self._reparsing = True
        try:
            return self._parse(line + b"\r\n" + text[eol + 1 :])
        finally:
            self._reparsing = False

    def _restart(self) -> None:
        self._parser = _new_parser(self)
        self.in_message = False
        self._header_bytes = 0

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self._url = b""
        self._headers = []
        self._header_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value, not after it; Tornado drops both.
        self._headers.append((name.decode("latin1"), value.decode("latin1").rstrip(" \t")))
        self._header_size += len(name) + len(value) + _LINE_OVERHEAD

    def on_headers_complete(self) -> None:
        self._headers_done = True
        size = len(self._url) + self._header_size
        self._header_bytes = 0
        if size > self.max_header_size:
            self._fail(BadRequest("request headers too large", 431))
        version = _VERSIONS.get(self._parser.get_http_version())
        if version is None:
            self._fail(BadRequest(_BAD_LINE))
        headers = tornado.checked_headers(self._headers)  # llhttp checked every character
        if "Transfer-Encoding" in headers and headers["Transfer-Encoding"].lower() != "chunked":
            encoding = headers["Transfer-Encoding"]
            self._fail(BadRequest(f"Unsupported Transfer-Encoding {encoding}"))
        method = self._method_override or self._method()
        self._method_override = None
        self.sink.request_parsed(
            RequestStartLine(method, self._url.decode("latin1"), version), headers
        )

    def on_body(self, body: bytes) -> None:
        self.sink.body_received(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._headers_done = False
        self._completed = True
        self._header_bytes = 0
        self.sink.request_complete()

    def _method(self) -> str:
        raw: bytes = self._parser.get_method()
        method = _METHODS.get(raw)
        if method is None:
            method = _METHODS[raw] = raw.decode("ascii")
        return method

    def _fail(self, error: BadRequest) -> NoReturn:
        """Stop llhttp from a callback; `feed` raises `error`."""
        self._error = error
        raise error
