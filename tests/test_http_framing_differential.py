"""HTTP/1.x connection and request-line semantics on both HTTP servers, judged by RFC
9110/9112: when a connection persists or closes (HTTP/1.0, `Connection` token lists, a
handler's own close, answers without a length), `Expect: 100-continue`, protocol versions,
request-target forms and limits, malformed request and field lines, early answers and a
client's half-close. Each case is followed by a normal request when the connection stays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_differential_support import (
    AWAIT_INTERIM,
    HIDDEN,
    KINDS,
    SHUT_WR,
    Case,
    EchoServer,
    answer,
    case,
    check,
    echo_server,
    params,
    refuse,
)

pytestmark = pytest.mark.timeout(60)

A = answer(200, served=["GET /a 0"])
A_CLOSED = answer(200, close=True, served=["GET /a 0"])
POST_HEAD = b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"


def _get(
    version: bytes = b"HTTP/1.1", fields: bytes = b"Host: t\r\n", target: bytes = b"/a"
) -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + fields + b"\r\n"


PERSISTENCE = [
    case("http11-persists", "9112 9.3", "HTTP/1.1 persists by default", _get(), expect=A),
    case(
        "http10-closes",
        "9112 9.3",
        "HTTP/1.0 without keep-alive: the connection closes after the answer",
        _get(b"HTTP/1.0", b""),
        expect=A_CLOSED,
    ),
    case(
        "http10-keep-alive",
        "9112 9.3, C.2.2",
        "HTTP/1.0 with Connection: keep-alive MAY persist",
        _get(b"HTTP/1.0", b"Connection: keep-alive\r\n"),
        expect=answer(200, close=None, served=["GET /a 0"]),
    ),
    case(
        "http10-keep-alive-no-length",
        "9112 6.3 (8), 9.3",
        "an answer with no length to HTTP/1.0 ends at the close: it cannot persist",
        _get(b"HTTP/1.0", b"Connection: keep-alive\r\n", b"/a/stream"),
        expect=answer(200, close=True, served=["GET /a/stream 0"]),
        tornado="keeps the connection after an answer whose end only the close can mark",
    ),
    case(
        "http11-stream-is-chunked",
        "9112 7.1, 9.3",
        "an answer with no length to HTTP/1.1 is chunked and the connection persists",
        _get(target=b"/a/stream"),
        expect=answer(200, served=["GET /a/stream 0"]),
    ),
    case(
        "connection-close",
        "9112 9.6",
        "Connection: close: the server MUST close after its answer",
        _get(fields=b"Host: t\r\nConnection: close\r\n"),
        expect=A_CLOSED,
    ),
    case(
        "connection-close-uppercase",
        "9110 7.6.1",
        "connection options are case-insensitive: CLOSE is close",
        _get(fields=b"Host: t\r\nConnection: CLOSE\r\n"),
        expect=A_CLOSED,
    ),
    case(
        "connection-token-list",
        "9110 7.6.1, 9112 9.6",
        "Connection is a list of options: 'TE, close' holds close",
        _get(fields=b"Host: t\r\nTE: trailers\r\nConnection: TE, close\r\n"),
        expect=A_CLOSED,
        tornado="compares the whole Connection value with 'close'",
    ),
    case(
        "connection-list-ows",
        "9110 7.6.1, 5.6.1",
        "list elements with OWS around them: ' keep-alive ,  close ' holds close",
        _get(fields=b"Host: t\r\nConnection:  keep-alive ,  close \r\n"),
        expect=A_CLOSED,
        tornado="compares the whole Connection value with 'close'",
    ),
    case(
        "connection-two-fields",
        "9110 5.3, 7.6.1",
        "two Connection lines combine: the second holds close",
        _get(fields=b"Host: t\r\nConnection: keep-alive\r\nConnection: close\r\n"),
        expect=A_CLOSED,
        tornado="compares the whole Connection value with 'close'",
    ),
    case(
        "handler-sends-close",
        "9112 9.6",
        "a server that sends the close option MUST close after that answer",
        _get(target=b"/a/close"),
        expect=answer(200, close=True, served=["GET /a/close 0"]),
        tornado="ignores the handler's own Connection: close and keeps the connection",
    ),
    case(
        "half-close-slow-handler",
        "9112 9.6, 9.8",
        "a client that half-closes after a whole request still gets its answer",
        _get(target=b"/a/sleep"),
        SHUT_WR,
        expect=answer(200, close=True, served=["GET /a/sleep 0"]),
        tornado="closes at the client's FIN, so a slow handler's answer is lost",
    ),
    case(
        "early-answer-unread-body",
        "9112 9.6, 9110 15.5.4",
        "an answer before the body is read: close (announced), or read and drop the body",
        b"POST /a/early HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n",
        0.2,
        b"0123456789",
        expect=[answer(403, close=True), answer(403, close=False)],
        announce_close=True,
        tornado="closes without the Connection: close that tells the client why",
    ),
]

EXPECT = [
    case(
        "expect-100-continue",
        "9110 10.1.1",
        "Expect: 100-continue gets 100 before the body is sent",
        POST_HEAD + b"Expect: 100-continue\r\n\r\n",
        AWAIT_INTERIM,
        b"hello",
        expect=answer(200, served=["POST /a 5"]),
        interim=(100,),
    ),
    case(
        "expect-100-continue-case",
        "9110 10.1.1",
        "the expectation is case-insensitive: 100-Continue gets 100",
        POST_HEAD + b"Expect: 100-Continue\r\n\r\n",
        AWAIT_INTERIM,
        b"hello",
        expect=answer(200, served=["POST /a 5"]),
        interim=(100,),
        tornado="compares the value case-sensitively: no 100 (the client waits)",
    ),
    case(
        "expect-on-http10",
        "9110 10.1.1",
        "a 100-continue expectation in an HTTP/1.0 request MUST be ignored: no 100",
        b"POST /a HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        expect=answer(200, close=True, served=["POST /a 5"]),
        interim=(),
        tornado="sends 100 Continue to an HTTP/1.0 client",
    ),
    case(
        "expect-unknown",
        "9110 10.1.1",
        "an unknown expectation MAY get 417, or is ignored",
        POST_HEAD + b"Expect: fancy\r\n\r\nhello",
        expect=[answer(417, close=None), answer(200, served=["POST /a 5"])],
        interim=(),
    ),
]

REQUEST_LINE = [
    case(
        "http-1-2",
        "9110 2.5, 6.2",
        "a higher minor version is served as the highest this server speaks (1.1)",
        _get(b"HTTP/1.2"),
        expect=A,
        tornado="serves HTTP/1.2 as HTTP/1.0 (closes the connection)",
    ),
    case(
        "http-2-0",
        "9110 2.5, 15.6.6",
        "another major version over HTTP/1.1 framing: 505 (or 400)",
        _get(b"HTTP/2.0"),
        expect=refuse(400, 505),
    ),
    case(
        "http-0-9",
        "9112 3, 2.3",
        "a request line without a version is not an HTTP/1.1 request: 400",
        b"GET /a\r\n\r\n" + HIDDEN,
        expect=refuse(400, 505),
    ),
    case(
        "version-lowercase",
        "9112 2.3",
        "HTTP-name is case-sensitive: http/1.1 is not a version",
        _get(b"http/1.1") + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "version-no-minor",
        "9112 2.3",
        "HTTP-version is HTTP/DIGIT.DIGIT",
        _get(b"HTTP/1") + HIDDEN,
        expect=refuse(400, 505),
    ),
    case(
        "absolute-form",
        "9112 3.2.2",
        "a server MUST accept the absolute-form of the request target (the application may"
        " see it as sent, or as the origin-form with the authority as Host: the same target"
        " URI, RFC 9112 3.3)",
        _get(target=b"http://t/a"),
        expect=[answer(200, served=["GET http://t/a 0"]), answer(200, served=["GET /a 0"])],
    ),
    case(
        "asterisk-form",
        "9112 3.2.4",
        "OPTIONS * is the asterisk-form: the server answers it",
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        expect=[answer(200, served=["OPTIONS * 0"]), answer(404, close=None)],
    ),
    case(
        "space-in-target",
        "9112 3, 3.2",
        "whitespace inside the target makes the request line invalid: 400 (or 301)",
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n" + HIDDEN,
        expect=refuse(400, 301),
    ),
    case(
        "two-spaces-after-method",
        "9112 3",
        "single SP between the elements; recipients MAY split on whitespace instead",
        b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n",
        expect=[*refuse(400), A],
    ),
    case(
        "non-ascii-target",
        "9112 3.2, 3",
        "a target that is no URI: 400 SHOULD; a lenient server serves it as sent",
        b"GET /a\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
        expect=[*refuse(400), answer(200)],
    ),
    case(
        "empty-line-before-request",
        "9112 2.2",
        "at least one empty line before a request line SHOULD be ignored",
        b"\r\n" + _get(),
        expect=A,
    ),
    case(
        "target-too-long",
        "9112 3, 9110 15.5.15",
        "a target longer than the server parses MUST get 414",
        _get(target=b"/a?" + b"x" * 70_000),
        expect=refuse(414, close=None),
        tornado="answers 431 (the request line counts as the header section)",
    ),
    case(
        "fields-too-large",
        "RFC 6585 5",
        "a field section larger than the server takes: 431",
        _get(fields=b"Host: t\r\nX-Big: " + b"x" * 70_000 + b"\r\n"),
        expect=refuse(431, close=None),
    ),
]

FIELDS = [
    case(
        "missing-host",
        "9112 3.2",
        "an HTTP/1.1 request without Host MUST get 400",
        b"GET /a HTTP/1.1\r\n\r\n",
        expect=refuse(400, close=None),
    ),
    case(
        "two-hosts",
        "9112 3.2",
        "two Host lines MUST get 400",
        _get(fields=b"Host: t\r\nHost: u\r\n"),
        expect=refuse(400, close=None),
    ),
    case(
        "invalid-host",
        "9112 3.2, 9110 7.2",
        "a Host value that is no uri-host[:port] MUST get 400",
        _get(fields=b"Host: a b\r\n"),
        expect=refuse(400, close=None),
    ),
    case(
        "http10-without-host",
        "9112 3.2",
        "Host is required of HTTP/1.1 requests only",
        _get(b"HTTP/1.0", b""),
        expect=A_CLOSED,
    ),
    case(
        "field-without-colon",
        "9112 5",
        "a field line without a colon: invalid, 400",
        _get(fields=b"Host: t\r\nBogus\r\n") + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "space-in-field-name",
        "9110 5.1",
        "a field name is a token: a space makes the line invalid",
        _get(fields=b"Host: t\r\nBad Name: x\r\n") + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "empty-field-name",
        "9110 5.1",
        "a field name has at least one character",
        _get(fields=b"Host: t\r\n: x\r\n") + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "obs-text-value",
        "9110 5.5",
        "obs-text (0x80-0xFF) is allowed in field values",
        _get(fields=b"Host: t\r\nX-A: caf\xe9\r\n"),
        expect=A,
    ),
    case(
        "empty-value",
        "9110 5.5",
        "a field value may be empty",
        _get(fields=b"Host: t\r\nX-A:\r\n"),
        expect=A,
    ),
    case(
        "head-answer-has-no-body",
        "9110 9.3.2",
        "HEAD gets the header section of GET and no content",
        b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n",
        expect=answer(200, served=["HEAD /a 0"]),
        methods=("HEAD",),
    ),
    case(
        "body-over-limit",
        "9110 15.5.14, 9112 9.6",
        "a Content-Length over the server's limit: 413 (or 400), and the body is not read",
        b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000\r\n\r\nhello",
        expect=refuse(413, 400),
    ),
]

CASES = PERSISTENCE + EXPECT + REQUEST_LINE + FIELDS


@pytest.fixture(scope="module", params=KINDS)
def server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    yield from echo_server(request, tmp_path_factory)


@pytest.mark.parametrize("c", params(CASES))
def test_connections_persist_close_and_refuse_as_the_rfc_says(server: EchoServer, c: Case) -> None:
    check(server, c)
