"""Request parsing with httptools (llhttp), made to accept and refuse what Tornado's own
HTTP/1 parser does: bare LF line endings pass, a method token llhttp does not know reaches
the application (which answers 405), and every framing that could smuggle a request (both
Content-Length and Transfer-Encoding, two Content-Lengths, a transfer coding other than
chunked, a bad chunk size) is refused."""

from __future__ import annotations

import contextlib
import re
from typing import NoReturn, Protocol

import httptools
from tornado.httputil import HTTPHeaders, RequestStartLine

from .. import tornado_adapter as tornado
from .ends import request_end
from .refusal import BAD_LINE, BadRequest, tornado_reason

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BARE_LF_ERROR = "Expected CRLF after version"
"""llhttp's error for a request line ended by a bare LF (its leniency covers headers only)."""
_LINE_OVERHEAD = 4  # ": " and CRLF around each header line
_METHODS: dict[bytes, str] = {}
_VERSIONS = {"1.0": "HTTP/1.0"} | {f"1.{minor}": "HTTP/1.1" for minor in range(1, 10)}
"""A later HTTP/1 minor version is served as 1.1, the highest this server speaks (RFC 9110
section 2.5); another major version is refused."""
_TE_ERROR = "Request has invalid `Transfer-Encoding`"
_TE_OWS = re.compile(rb"(?im)^(transfer-encoding:[ \t]*chunked)([ \t]+)(?=\r?$)")
_HEADER_BLOCK_END = re.compile(rb"(?:^|\n)\r?\n")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_ABSOLUTE_FORM = re.compile(rb"(?is)https?://([^/?#]*)(.*)")
CHUNKED_STAND_IN = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
_TAIL = 64
"""Bytes kept from the end of the last packet of a chunked body: a chunk's size line split
over packets is found whole if it is shorter."""
_MAX_REPARSES = 32
"""Requests parsed again one behind the other in one packet (each nests a call)."""


class ParserSink(Protocol):
    """Who receives what the parser reads, in order."""

    def request_parsed(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        """A request's start line and headers were read."""

    def body_received(self, data: bytes) -> None:
        """A piece of the current request's body (already de-chunked)."""

    def request_complete(self) -> None:
        """The current request has been read to its end."""

    def request_withdrawn(self) -> None:
        """The request just reported by `request_parsed` is parsed again: forget it."""

    def chunk_announced(self, left: int) -> None:
        """The chunk being read has `left` bytes still to come (told when its size line
        is among the last bytes parsed)."""


def _new_parser(callbacks: object) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(callbacks)
    # Tornado accepts a bare LF as a line ending (RFC 9112 section 2.2 allows it).
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True, lenient_version=True)
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
        self._ends = 0
        self._strict_lines = False  # in a chunked body: every line ends in CRLF
        self._chunk_open = False  # a chunk's data is being read
        self._chunk_seen = False  # a chunk's size line was parsed in this feed
        self._chunk_read = 0  # bytes of the chunk's data read since its size line
        self._tail = b""  # the end of the last bytes parsed in a chunked body
        self._method_override: str | None = None
        self._target_override: bytes | None = None
        self._held = b""
        self._line = b""
        self._reparsing = 0
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
            raise BadRequest(BAD_LINE)
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
        ends = self._ends
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
            reason = str(exc)
            te_ows = reason == _TE_ERROR and self._chunked_with_ows()
            if (
                unknown_method
                or te_ows
                or reason == _BARE_LF_ERROR
                or isinstance(exc, httptools.HttpParserInvalidURLError)
            ) and start:
                done = self._ends - ends  # requests llhttp completed before this one
                rest = start
                if done:  # those bytes end at the end of request `done` of `start`
                    end = request_end([start], done, True, self._new_parser)
                    rest = start[end:] if end is not None else b""
                if rest:
                    self._line = b""
                    if te_ows:  # llhttp refuses the coding after reporting the headers
                        self.sink.request_withdrawn()
                    return self._reparse(rest, unknown_method, te_ows, done > 0)
            raise BadRequest(tornado_reason(exc, self._line + data)) from None
        if self._chunk_seen:
            self._chunk_seen = False
            if self._chunk_open:
                self._announce_chunk(data)
        if self._strict_lines:
            self._tail = data[-_TAIL:]
        if self.in_message and not self._headers_done:
            if self._header_bytes > self.max_header_size:
                raise BadRequest("request headers too large", 431)
            self._line = start if not self._headers and not self._completed else b""
        elif self._line:
            self._line = b""
        return None

    def _reparse(self, data: bytes, unknown_method: bool, te_ows: bool, later: bool) -> int | None:
        """Parse again a request llhttp refused where Tornado accepts it: a bare LF ending
        the request line; a method token llhttp does not know (parsed under a stand-in, and
        reported as sent: the application answers 405, as with Tornado); bytes over 0x7F in
        the target (obs-text); `Transfer-Encoding: chunked` followed by a tab (OWS, RFC 9110
        section 5.6.3; given to llhttp as spaces). `data` holds the request from its first
        byte (`later`: a request behind others, not the one parsed again already); returns
        as `_parse` does."""
        text = data.lstrip(b"\r\n")
        token = text.partition(b" ")[0].partition(b"\n")[0].removesuffix(b"\r")
        if unknown_method and not _TOKEN.fullmatch(token):
            raise BadRequest(BAD_LINE)
        eol = text.find(b"\n")
        if eol < 0:
            if len(text) > self.max_header_size:
                raise BadRequest("request headers too large", 431)
            self._restart()
            self._held = text  # wait for the end of the request line
            return None
        line = text[:eol].removesuffix(b"\r")
        if (self._reparsing and not later) or self._reparsing >= _MAX_REPARSES:
            raise BadRequest(BAD_LINE)
        if unknown_method:
            token, space, rest = line.partition(b" ")
            if not space or not _TOKEN.fullmatch(token):
                raise BadRequest(BAD_LINE)
            self._method_override = token.decode("latin1")
            line = b"GET " + rest
        if not line.isascii():
            line = self._ascii_target(line)
        rest = text[eol + 1 :]
        if te_ows:
            rest = _te_ows_as_spaces(rest)
        self._restart()
        self._reparsing += 1
        try:
            return self._parse(line + b"\r\n" + rest)
        finally:
            self._reparsing -= 1

    def _ascii_target(self, line: bytes) -> bytes:
        """The request line with each byte over 0x7F of its target replaced (same length);
        the target is reported as sent."""
        parts = line.split(b" ")
        if len(parts) != 3 or not (parts[0] + parts[2]).isascii():
            raise BadRequest(BAD_LINE)
        self._target_override = parts[1]
        return b" ".join((parts[0], _NON_ASCII.sub(b"x", parts[1]), parts[2]))

    def _chunked_with_ows(self) -> bool:
        """The one Transfer-Encoding read is `chunked` (llhttp refuses a tab after it)."""
        values = [value for name, value in self._headers if name.lower() == "transfer-encoding"]
        return len(values) == 1 and values[0].lower() == "chunked"

    def expect_chunked_body(self) -> None:
        """Read what is fed next as the chunked body of the current request, then requests
        again: for a request whose headers llhttp stopped at (an Upgrade it will not take).
        A fresh llhttp is primed with a stand-in request's headers, reported to no one."""
        self._restart()
        sink, self.sink = self.sink, _BodyOnly(self.sink)
        try:
            self._parser.feed_data(CHUNKED_STAND_IN)
        finally:
            self.sink = sink
        self._line = CHUNKED_STAND_IN  # the start of what `feed` parses next, as sent

    def _new_parser(self, sink: ParserSink) -> RequestParser:
        """A parser like this one for `sink` (to find where requests end)."""
        return RequestParser(sink, self.max_header_size)

    def _announce_chunk(self, data: bytes) -> None:
        """Tell the sink how much of the open chunk is still to come: httptools does not
        give a chunk's size, but its size line ends where the chunk's data read from `data`
        begins (counted from the end), so it is read from `data` and the bytes before it,
        if the line is whole in them."""
        text = self._tail + data
        end = len(text) - self._chunk_read - 2  # the CRLF that ends the size line
        start = text.rfind(b"\n", 0, end) + 1
        if start > 0:
            size = text[start:end].partition(b";")[0]
            with contextlib.suppress(ValueError):
                self.sink.chunk_announced(int(size, 16) - self._chunk_read)

    def _restart(self) -> None:
        self._parser = _new_parser(self)
        self.in_message = False
        self._header_bytes = 0
        self._headers_done = False
        self._strict_lines = False

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self._url = b""
        self._headers = []
        self._header_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_header_size:  # checked as it grows: never buffered
            self._fail(BadRequest("request target too long", 414))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + _LINE_OVERHEAD
        if self._headers_done:  # a trailer field (RFC 9112 7.1.2): dropped, its size counted
            if self._header_size > self.max_header_size:
                self._fail(BadRequest("request headers too large", 431))
            return
        # llhttp drops the whitespace before a value, not after it; Tornado drops both.
        self._headers.append((name.decode("latin1"), value.decode("latin1").rstrip(" \t")))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        size = len(self._url) + self._header_size
        self._header_bytes = 0
        if size > self.max_header_size:
            self._fail(BadRequest("request headers too large", 431))
        version = _VERSIONS.get(self._parser.get_http_version())
        if version is None:
            self._fail(BadRequest(BAD_LINE))
        headers = tornado.checked_headers(self._headers)  # llhttp checked every character
        if "Transfer-Encoding" in headers:
            encoding = headers["Transfer-Encoding"]
            if _codings(encoding) != ["chunked"]:
                self._fail(BadRequest(f"Unsupported Transfer-Encoding {encoding}"))
            # Chunk lines end in CRLF (RFC 9112 section 7.1): the bare LF allowed in the
            # header block would let `5\r\nhello\n0` end a body a strict reader goes on with.
            self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=False)
            self._strict_lines = True
        method = self._method_override or self._method()
        self._method_override = None
        url = self._url
        if self._target_override is not None:
            url, self._target_override = self._target_override, None
        if url[:1] != b"/":
            url = self._origin_form(url, headers)
        self.sink.request_parsed(RequestStartLine(method, url.decode("latin1"), version), headers)

    def on_chunk_header(self) -> None:
        self._chunk_open = self._chunk_seen = True
        self._chunk_read = 0

    def on_chunk_complete(self) -> None:
        self._chunk_open = False

    def on_body(self, body: bytes) -> None:
        if self._chunk_open:
            self._chunk_read += len(body)
        self.sink.body_received(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        self._headers_done = False
        self._completed = True
        self._ends += 1
        self._header_bytes = 0
        if self._strict_lines:
            self._strict_lines = False
            self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self.sink.request_complete()

    def _origin_form(self, url: bytes, headers: HTTPHeaders) -> bytes:
        """An absolute-form target (`http://host/path`, which a server must accept: RFC 9112
        section 3.2.2) as the origin-form applications route by; its authority replaces the
        Host header (same section). Other forms (`*`, CONNECT's authority) are kept."""
        match = _ABSOLUTE_FORM.fullmatch(url)
        if match is None:
            return url
        authority, path = match.groups()
        if not authority or b"@" in authority:  # RFC 9110 sections 4.2.1 and 4.2.4
            self._fail(BadRequest(BAD_LINE))
        headers["Host"] = authority.decode("latin1")
        return path if path[:1] == b"/" else b"/" + path

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


class _BodyOnly:
    """A `ParserSink` that passes on everything but the request's start."""

    def __init__(self, sink: ParserSink) -> None:
        self.sink = sink

    def request_parsed(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        pass

    def body_received(self, data: bytes) -> None:
        self.sink.body_received(data)

    def request_complete(self) -> None:
        self.sink.request_complete()

    def request_withdrawn(self) -> None:
        pass

    def chunk_announced(self, left: int) -> None:
        self.sink.chunk_announced(left)


def _codings(value: str) -> list[str]:
    """The transfer codings of a `Transfer-Encoding` value, lower-cased, its empty list
    elements ignored (RFC 9110 section 5.6.1)."""
    return [coding for part in value.split(",") if (coding := part.strip(" \t").lower())]


def _te_ows_as_spaces(rest: bytes) -> bytes:
    """`rest` (a header block and what follows it) with the whitespace after a
    `Transfer-Encoding: chunked` turned into spaces, which llhttp accepts."""
    end = _HEADER_BLOCK_END.search(rest)
    split = end.end() if end is not None else len(rest)
    block = _TE_OWS.sub(lambda match: match[1] + b" " * len(match[2]), rest[:split])
    return block + rest[split:]
