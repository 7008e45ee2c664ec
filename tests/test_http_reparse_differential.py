"""The paths where a parser holds, re-reads or hands over bytes, tried on both HTTP servers:
`Upgrade:` requests (with bodies, pipelined, a real WebSocket handshake), request lines it
must parse again (empty lines before a lowercase or long unknown method, bare LF ends, a line
split over packets), and requests trickled byte by byte or cut at tricky offsets.
A request is never made of bytes of another request's body or header (`/SMUGGLED`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from http_differential_support import (
    HIDDEN,
    KINDS,
    Case,
    EchoServer,
    Reply,
    Step,
    answer,
    case,
    check,
    chunked,
    echo_server,
    msg,
    params,
    refuse,
)

pytestmark = pytest.mark.timeout(60)

UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
N = len(HIDDEN)
REPARSE = "9112 2.2, 9110 9.1, 7.8"
"""Empty lines before a request line SHOULD be ignored; a method is a case-sensitive token
('get' is not GET: 405 or 501); a server MAY ignore Upgrade."""
SPLIT = "9112 2.1"
"""HTTP/1.1 is a byte stream: its framing cannot depend on where packets end."""
WEBSOCKET = (
    b"GET /ws HTTP/1.1\r\nHost: t\r\n"
    + UPGRADE
    + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def unknown(served: list[str]) -> list[Reply]:
    """A method the application does not take: 405 from it, or 501 from the server."""
    return [answer(405, served=served), answer(501, close=None), *refuse(501)]


def bytewise(data: bytes, pause: float = 0.002) -> tuple[Step, ...]:
    steps: list[Step] = []
    for index in range(len(data)):
        steps += [data[index : index + 1], pause]
    return tuple(steps)


def split(data: bytes, *offsets: int, pause: float = 0.05) -> tuple[Step, ...]:
    """`data` cut at `offsets` (negative: from the end), with a pause between the pieces."""
    cuts = [0, *(offset % len(data) for offset in offsets), len(data)]
    steps: list[Step] = []
    for start, end in itertools.pairwise(cuts):
        steps += [data[start:end], pause]
    return tuple(steps)


LOWER_UPGRADE_BODY = b"\r\n" + msg(
    b"get /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", HIDDEN
)
LONG_METHOD_BODY = msg(
    b"PROPFINDXYZW /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", HIDDEN
)
BARE_LF_UPGRADE_BODY = msg(
    b"GET /a HTTP/1.1\nHost: t\nUpgrade: websocket\nConnection: Upgrade\nContent-Length: {n}",
    HIDDEN,
    end=b"\n\n",
)
UPGRADE_BODY = msg(b"GET /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", HIDDEN)
CL_TE = msg(
    b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked",
    chunked(b"hello") + HIDDEN,
)
CL_TE_ALLOWED = [*refuse(400), answer(200, close=True, served=["POST /a 5"])]
CHUNKED_HIDDEN = msg(b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", chunked(HIDDEN))
CL_HIDDEN = msg(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}", HIDDEN)
GET_A = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"

H36 = HIDDEN.replace(b"Host: t", b"Host: tt")
"""A hidden request of 36 bytes: what an offset measured in a rebuilt buffer misses by when
18 CRLFs (or 36 LFs, or a 39-letter method for GET) are stripped before the request line."""
PADDED = b"A" * 64 + H36
NEXT = b"123456789GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
"""A request whose method is '123456789GET' (a token): shifted by 9 bytes it would be GET."""
SHIFTED = [
    case(
        "many-empty-lines-upgrade-body",
        REPARSE,
        "18 empty lines, a lowercase method, Upgrade, a body ending in a request",
        b"\r\n" * 18
        + msg(b"get /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", PADDED),
        expect=[*unknown([f"get /a {len(PADDED)}"]), *refuse(400)],
    ),
    case(
        "many-bare-lf-lines-upgrade-body",
        REPARSE,
        "36 bare-LF empty lines, a lowercase method, Upgrade, a body ending in a request",
        b"\n" * 36
        + msg(b"get /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", PADDED),
        expect=[*unknown([f"get /a {len(PADDED)}"]), *refuse(400)],
    ),
    case(
        "39-letter-method-upgrade-body",
        REPARSE,
        "a 39-letter unknown method, Upgrade, a body ending in a request",
        msg(b"M" * 39 + b" /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", PADDED),
        expect=unknown([f"{'M' * 39} /a {len(PADDED)}"]),
    ),
    case(
        "bare-lf-line-upgrade-then-next",
        "9112 2.2, 9110 7.8",
        "a bare-LF Upgrade request with a body, then a request with a 12-letter method",
        msg(
            b"GET /a HTTP/1.1\nHost: t\nUpgrade: websocket\nConnection: Upgrade\n"
            b"Content-Length: {n}",
            b"hello",
            end=b"\n\n",
        )
        + NEXT,
        expect=[
            answer(200, 405, served=["GET /a 5", "123456789GET /b 0"]),
            answer(200, 501, close=None),
            *refuse(400),
        ],
    ),
    case(
        "split-method-upgrade-then-next",
        f"{SPLIT}, {REPARSE}",
        "a lowercase method held over a packet end, Upgrade, a body, then the next request",
        b"get /a HT",
        0.05,
        msg(b"TP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", b"hello") + NEXT,
        expect=[
            answer(405, 405, served=["get /a 5", "123456789GET /b 0"]),
            answer(501, 501, close=None),
        ],
    ),
]

REPARSING = [
    case(
        "crlf-lowercase-upgrade-body",
        REPARSE,
        "empty lines, a lowercase method, Upgrade and a body holding a request",
        LOWER_UPGRADE_BODY,
        expect=unknown([f"get /a {N}"]),
    ),
    case(
        "two-empty-lines-lowercase-upgrade-body",
        REPARSE,
        "two empty lines (at least one SHOULD be ignored), a lowercase method, Upgrade, body",
        b"\r\n" + LOWER_UPGRADE_BODY,
        expect=[*unknown([f"get /a {N}"]), *refuse(400)],
    ),
    case(
        "crlf-lowercase-upgrade-header",
        REPARSE,
        "a request line inside a header value is part of that value",
        b"\r\nget /a HTTP/1.1\r\nUpgrade: websocket\r\nX-Pad: " + HIDDEN[:-4] + b"\r\n\r\n",
        expect=unknown(["get /a 0"]),
    ),
    case(
        "long-method-upgrade-body",
        REPARSE,
        "a long unknown method, Upgrade and a body holding a request",
        LONG_METHOD_BODY,
        expect=unknown([f"PROPFINDXYZW /a {N}"]),
    ),
    case(
        "bare-lf-upgrade-body",
        "9112 2.2, 9110 7.8",
        "bare-LF line ends (MAY be taken), Upgrade and a body holding a request",
        BARE_LF_UPGRADE_BODY,
        expect=[answer(200, served=[f"GET /a {N}"]), *refuse(400)],
    ),
    case(
        "split-line-upgrade-body",
        f"{SPLIT}, 9110 7.8",
        "a request line over two packets, Upgrade and a body holding a request",
        *split(UPGRADE_BODY, 9),
        expect=answer(200, served=[f"GET /a {N}"]),
    ),
    case(
        "split-method-upgrade-body",
        f"{SPLIT}, {REPARSE}",
        "a lowercase method cut in two, Upgrade and a body holding a request",
        *split(LOWER_UPGRADE_BODY, 4),
        expect=unknown([f"get /a {N}"]),
    ),
    case(
        "split-empty-lines-upgrade-body",
        f"{SPLIT}, {REPARSE}",
        "the empty line before the request line cut between its CR and LF",
        *split(LOWER_UPGRADE_BODY, 1),
        expect=unknown([f"get /a {N}"]),
    ),
    case(
        "split-long-method-body",
        f"{SPLIT}, {REPARSE}",
        "a long unknown method cut in two, then a body holding a request",
        *split(LONG_METHOD_BODY, 8),
        expect=unknown([f"PROPFINDXYZW /a {N}"]),
    ),
    case(
        "unknown-method-body",
        "9110 9.1, 9112 6.3",
        "an unknown method with a Content-Length body holding a request",
        msg(b"FOO /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}", HIDDEN),
        expect=unknown([f"FOO /a {N}"]),
    ),
    case(
        "bare-lf-chunked-body",
        "9112 2.2, 7.1",
        "bare-LF field lines and a chunked body holding a request",
        msg(b"POST /a HTTP/1.1\nHost: t\nTransfer-Encoding: chunked", chunked(HIDDEN), b"\n\n"),
        expect=[answer(200, served=[f"POST /a {N}"]), *refuse(400)],
    ),
    case(
        "lowercase-chunked-body",
        REPARSE,
        "empty lines, a lowercase method and a chunked body holding a request",
        b"\r\n"
        + msg(b"post /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", chunked(HIDDEN)),
        expect=unknown([f"post /a {N}"]),
    ),
    case(
        "upgrade-length-body",
        "9110 7.8, 9112 6.3",
        "a POST with Upgrade and a Content-Length body holding a request: served as a POST",
        msg(b"POST /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: {n}", HIDDEN),
        expect=answer(200, served=[f"POST /a {N}"]),
    ),
    case(
        "upgrade-chunked-body",
        "9110 7.8, 9112 7.1",
        "a POST with Upgrade: h2c and a chunked body holding a request: served as a POST",
        msg(
            b"POST /a HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
            b"Transfer-Encoding: chunked",
            chunked(HIDDEN),
        ),
        expect=answer(200, served=[f"POST /a {N}"]),
    ),
    case(
        "upgrade-ignored-then-pipelined",
        "9110 7.8, 9112 9.3",
        "an Upgrade the application does not take: the next request is HTTP again",
        b"GET /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"\r\n" + GET_B,
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
    case(
        "lowercase-upgrade-then-pipelined",
        REPARSE,
        "an Upgrade on an unknown method, then a pipelined request",
        b"\r\nget /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"\r\n" + GET_B,
        expect=[answer(405, 200, served=["get /a 0", "GET /b 0"]), answer(501, 200, close=None)],
    ),
    case(
        "bare-lf-upgrade-then-pipelined",
        "9112 2.2, 9110 7.8",
        "a bare-LF Upgrade request, then a pipelined request",
        b"GET /a HTTP/1.1\nHost: t\nUpgrade: websocket\n\n" + GET_B,
        expect=[answer(200, 200, served=["GET /a 0", "GET /b 0"]), *refuse(400)],
    ),
    case(
        "websocket-then-request-bytes",
        "RFC 6455 4.2.2, 9110 7.8",
        "after 101 the bytes are WebSocket frames, never an HTTP request",
        WEBSOCKET + HIDDEN,
        expect=answer(101, close=None, served=["GET /ws 0"]),
    ),
    case(
        "connect-refused-then-pipelined",
        "9110 9.3.6",
        "only a 2xx answer to CONNECT makes a tunnel: after a refusal, HTTP goes on",
        b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n" + GET_B,
        expect=[
            answer(405, 200, served=["CONNECT t:443 0", "GET /b 0"]),
            answer(501, 200, close=None),
            *refuse(400, 501),
        ],
    ),
]

SPLITS = [
    case(
        "bytewise-get",
        SPLIT,
        "a request sent one byte at a time",
        *bytewise(GET_A),
        expect=answer(200, served=["GET /a 0"]),
    ),
    case(
        "bytewise-cl-te",
        f"{SPLIT}, 9112 6.1",
        "Content-Length and Transfer-Encoding one byte at a time: 400, or chunked and close",
        *bytewise(CL_TE),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "bytewise-chunked",
        f"{SPLIT}, 9112 7.1",
        "a chunked body holding a request, one byte at a time",
        *bytewise(CHUNKED_HIDDEN),
        expect=answer(200, served=[f"POST /a {N}"]),
    ),
    case(
        "bytewise-lowercase-upgrade-body",
        f"{SPLIT}, {REPARSE}",
        "empty lines, lowercase method, Upgrade and a body, one byte at a time",
        *bytewise(LOWER_UPGRADE_BODY, 0.001),
        expect=unknown([f"get /a {N}"]),
    ),
    case(
        "split-field-name",
        f"{SPLIT}, 9112 6.1",
        "Transfer-Encoding cut in its name, with a Content-Length",
        *split(CL_TE, CL_TE.index(b"Transfer-En") + 11),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "split-cr-lf-of-empty-line",
        SPLIT,
        "a cut between the CR and LF that end the field section",
        *split(CL_HIDDEN, CL_HIDDEN.index(b"\r\n\r\n") + 3),
        expect=answer(200, served=[f"POST /a {N}"]),
    ),
    case(
        "split-chunk-size",
        f"{SPLIT}, 9112 7.1",
        "a chunk size (0x10) cut between its digits",
        *split(msg(b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", b"1"), -1),
        b"0\r\n0123456789abcdef\r\n0\r\n\r\n",
        expect=answer(200, served=["POST /a 16"]),
    ),
    case(
        "split-last-chunk",
        f"{SPLIT}, 9112 7.1",
        "the last chunk cut after its CR",
        *split(
            msg(b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", chunked(b"hello")), -4
        ),
        expect=answer(200, served=["POST /a 5"]),
    ),
    case(
        "split-inside-body",
        SPLIT,
        "a Content-Length body holding a request, cut in the middle of it",
        *split(CL_HIDDEN, -20, -10),
        expect=answer(200, served=[f"POST /a {N}"]),
    ),
    case(
        "split-pipelined-method",
        f"{SPLIT}, 9112 9.3.2",
        "a pipelined request whose method is cut",
        *split(GET_A + GET_B, len(GET_A) + 2),
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
    case(
        "split-pipelined-lowercase",
        f"{SPLIT}, {REPARSE}",
        "a pipelined lowercase method cut in two",
        *split(GET_A + GET_B.replace(b"GET", b"get"), len(GET_A) + 2),
        expect=[answer(200, 405, served=["GET /a 0", "get /b 0"]), answer(200, 501, close=None)],
    ),
    case(
        "split-pipelined-bare-lf",
        f"{SPLIT}, 9112 2.2",
        "a bare-LF request pipelined after a CRLF one, cut in its fields: served as alone",
        *split(GET_A + b"GET /b HTTP/1.1\nHost: t\n\n", -6),
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
    case(
        "split-after-upgrade",
        f"{SPLIT}, 9110 7.8",
        "an Upgrade request, then the next request in a later packet",
        b"GET /a HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"\r\n",
        0.05,
        GET_B,
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
]

CASES = SHIFTED + REPARSING + SPLITS


@pytest.fixture(scope="module", params=KINDS)
def server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    yield from echo_server(request, tmp_path_factory)


@pytest.mark.parametrize("c", params(CASES))
def test_reparsed_split_upgraded_and_pipelined_requests_take_no_bytes_of_another(
    server: EchoServer, c: Case
) -> None:
    check(server, c)
