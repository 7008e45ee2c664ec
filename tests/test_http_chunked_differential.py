"""Chunked request bodies with tricks in the chunk sizes, extensions, data ends and trailers,
tried on both HTTP servers: every size a parser could read two ways is refused with 400 and a
close (RFC 9112 7.1), valid forms are served, and the request planted after the body
(`/SMUGGLED`) is never served where the body was refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_differential_support import (
    HIDDEN,
    KINDS,
    Case,
    EchoServer,
    answer,
    case,
    check,
    echo_server,
    msg,
    params,
    refuse,
)

pytestmark = pytest.mark.timeout(30)

HEAD = b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
SERVED_HELLO = answer(200, served=["POST /a 5"])


def _body(chunks: bytes) -> bytes:
    return msg(HEAD, chunks)


def _bad(id: str, chunks: bytes, says: str, rfc: str = "9112 7.1", **extra: Any) -> Case:
    """Chunks that break the chunked grammar, then a hidden request: 400 and close."""
    return case(
        id,
        rfc,
        f"{says}: an invalid chunked body, 400 and close",
        _body(chunks + HIDDEN),
        expect=refuse(400),
        **extra,
    )


def _good(id: str, chunks: bytes, says: str, rfc: str = "9112 7.1", **extra: Any) -> Case:
    """A valid chunked "hello": served, and the connection goes on."""
    return case(id, rfc, says, _body(chunks), expect=SERVED_HELLO, **extra)


CASES = [
    case(
        "size-overflow-wraps-to-five",
        "9112 7.1",
        "a chunk size past 64 bits (2**64 + 5) must not wrap: 400 (or 413) and close",
        _body(b"10000000000000005\r\nhello\r\n0\r\n\r\n" + HIDDEN),
        expect=refuse(400, 413),
    ),
    case(
        "size-overflow-wraps-to-zero",
        "9112 7.1",
        "a chunk size of 2**64 must not read as the last chunk: 400 (or 413) and close",
        _body(b"10000000000000000\r\n\r\n" + HIDDEN),
        expect=refuse(400, 413),
    ),
    case(
        "size-huge",
        "9112 7.1, 9110 15.5.14",
        "a chunk larger than the server takes: 400 (or 413) and close",
        _body(b"fffffffffff\r\nhello\r\n"),
        expect=refuse(400, 413),
    ),
    _bad("size-leading-space", b" 5\r\nhello\r\n0\r\n\r\n", "chunk-size is 1*HEXDIG"),
    _bad("size-trailing-space", b"5 \r\nhello\r\n0\r\n\r\n", "whitespace after a size, no ';'"),
    _bad("size-0x-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", "a 0x prefix is not HEXDIG"),
    _bad("size-negative", b"-5\r\nhello\r\n0\r\n\r\n", "a sign is not HEXDIG"),
    _bad("size-plus", b"+5\r\nhello\r\n0\r\n\r\n", "a sign is not HEXDIG"),
    _bad("size-underscore", b"0_5\r\nhello\r\n0\r\n\r\n", "an underscore is not HEXDIG"),
    _bad("size-empty", b"\r\nhello\r\n0\r\n\r\n", "an empty chunk size"),
    _bad("size-not-hex", b"5g\r\nhello\r\n0\r\n\r\n", "a size with a non-hex digit"),
    _bad("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "a chunk-size line ends with CRLF"),
    _bad("size-bare-cr", b"5\rhello\r\n0\r\n\r\n", "a bare CR after a chunk size"),
    _bad("last-chunk-bare-lf", b"5\r\nhello\r\n0\n\n", "the last chunk's line ends with CRLF"),
    _bad("data-missing-crlf", b"5\r\nhelloXX0\r\n\r\n", "chunk data is followed by CRLF"),
    _bad("data-longer-than-size", b"3\r\nhello\r\n0\r\n\r\n", "more data than the chunk size"),
    _bad("data-bare-lf-after", b"5\r\nhello\n0\r\n\r\n", "chunk data is followed by CRLF"),
    _bad("data-bare-cr-after", b"5\r\nhello\r0\r\n\r\n", "chunk data is followed by CRLF"),
    _bad("ext-bare-lf", b"5;a=b\nhello\r\n0\r\n\r\n", "a bare LF inside a chunk extension"),
    _bad("ext-bare-cr", b"5;a\rb\r\nhello\r\n0\r\n\r\n", "a bare CR inside a chunk extension"),
    _bad("ext-quote-unclosed", b'5;a="b\r\nhello\r\n0\r\n\r\n', "an unclosed quoted extension"),
    _bad("ext-nul", b"5;a=\x00\r\nhello\r\n0\r\n\r\n", "NUL in a chunk extension"),
    _bad(
        "trailer-request-line",
        b"5\r\nhello\r\n0\r\n",
        "a request line where a trailer field belongs (no colon)",
        rfc="9112 7.1.2, 5",
    ),
    _good(
        "ext-token",
        b"5;name=value\r\nhello\r\n0\r\n\r\n",
        "a recipient MUST ignore unrecognized chunk extensions",
        rfc="9112 7.1.1",
        tornado="takes no chunk extensions: parses the size with them still on (400)",
    ),
    _good(
        "ext-quoted",
        b'5;n="a;b\\"c"\r\nhello\r\n0\r\n\r\n',
        "a quoted chunk extension may hold ';' and an escaped quote",
        rfc="9112 7.1.1",
        tornado="takes no chunk extensions: parses the size with them still on (400)",
    ),
    _good(
        "ext-bws",
        b"5 ; n = v\r\nhello\r\n0\r\n\r\n",
        "BWS around ';' and '=' in a chunk extension: recipients MUST remove it",
        rfc="9112 7.1.1, 9110 5.6.3",
        tornado="takes no chunk extensions: parses the size with them still on (400)",
        fast="llhttp refuses whitespace around ';' and '=' in a chunk line (400)",
    ),
    _good(
        "ext-on-last-chunk",
        b"5\r\nhello\r\n0;end\r\n\r\n",
        "the last chunk takes extensions too",
        rfc="9112 7.1.1",
        tornado="takes no chunk extensions: parses the size with them still on (400)",
    ),
    _good("several-chunks", b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "a body in several chunks"),
    case(
        "size-uppercase-hex",
        "9112 7.1, RFC 5234 HEXDIG",
        "HEXDIG takes A-F in either case",
        _body(b"A\r\nhellohello\r\na\r\nhellohello\r\n0\r\n\r\n"),
        expect=answer(200, served=["POST /a 20"]),
    ),
    _good(
        "size-leading-zeros",
        b"000000000000000000005\r\nhello\r\n0000\r\n\r\n",
        "chunk-size is 1*HEXDIG: leading zeros are valid",
    ),
    _good(
        "trailer-field",
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "a trailer section after the last chunk",
        rfc="9112 7.1.2",
        tornado="takes no trailer fields (400 'improperly terminated chunked request')",
    ),
    case(
        "trailer-content-length",
        "9112 7.1.2, 9110 6.5.1",
        "a framing field in the trailers does not frame: served as sent, or refused",
        _body(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
        expect=[SERVED_HELLO, *refuse(400)],
    ),
    case(
        "trailer-transfer-encoding",
        "9112 7.1.2, 9110 6.5.1",
        "Transfer-Encoding in the trailers does not frame: served as sent, or refused",
        _body(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        expect=[SERVED_HELLO, *refuse(400)],
    ),
    case(
        "data-holds-a-request",
        "9112 7.1",
        "chunk data is opaque: a request inside it is body",
        _body(b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN), HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
    ),
    case(
        "data-holds-a-last-chunk",
        "9112 7.1",
        "chunk data that looks like a last chunk and a request is body",
        _body(b"%x\r\n0\r\n\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN) + 5, HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN) + 5}"]),
    ),
]


@pytest.fixture(scope="module", params=KINDS)
def server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    yield from echo_server(request, tmp_path_factory)


@pytest.mark.parametrize("c", params(CASES))
def test_chunk_size_tricks_are_refused_and_valid_chunked_bodies_are_served(
    server: EchoServer, c: Case
) -> None:
    check(server, c)
