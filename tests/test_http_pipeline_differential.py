"""Pipelines on both HTTP servers: several requests in one packet, bodies that hold
requests, a bad request among good ones, HEAD, 100-continue, HTTP/1.0 and Connection: close.
Answers come in order, one per request, and nothing after a close or a framing error runs
(RFC 9112 9.3, 9.6)."""

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
    chunked,
    echo_server,
    msg,
    params,
    refuse,
)

pytestmark = pytest.mark.timeout(60)

N = len(HIDDEN)
GET_A = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
CL_HIDDEN = msg(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: {n}", HIDDEN)
CHUNKED_HIDDEN = msg(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", chunked(HIDDEN))

CASES = [
    case(
        "two-gets",
        "9112 9.3.2",
        "a server MAY process pipelined requests in parallel, answering in order",
        GET_A + GET_B,
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
    case(
        "three-with-bodies",
        "9112 9.3.2, 6.3",
        "GET, a POST and a chunked POST whose bodies hold requests, in one packet",
        GET_A + CL_HIDDEN + CHUNKED_HIDDEN,
        expect=answer(200, 200, 200, served=["GET /a 0", f"POST /b {N}", f"POST /c {N}"]),
    ),
    case(
        "ten-gets",
        "9112 9.3.2",
        "ten pipelined requests in one packet",
        GET_A * 10,
        expect=answer(*[200] * 10, served=["GET /a 0"] * 10),
    ),
    case(
        "bad-length-then-hidden",
        "9112 6.3 (5)",
        "an invalid Content-Length: 400 and close, the bytes after are never read",
        b"GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n" + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "good-bad-hidden",
        "9112 6.3 (5), 9.3.2",
        "a valid request, an invalid one, a hidden one: 200, 400, close",
        GET_A + b"GET /b HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n" + HIDDEN,
        expect=answer(200, 400, close=True, served=["GET /a 0"]),
    ),
    case(
        "head-then-get",
        "9110 9.3.2, 9112 6.3 (1)",
        "a HEAD answer has no body: the next answer follows its header section",
        b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n" + GET_B,
        expect=answer(200, 200, served=["HEAD /a 0", "GET /b 0"]),
        methods=("HEAD", "GET"),
    ),
    case(
        "expect-then-next",
        "9110 10.1.1, 9112 9.3.2",
        "a body sent without waiting for 100 Continue, then the next request",
        msg(b"POST /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5", b"hello")
        + GET_B,
        expect=answer(200, 200, served=["POST /a 5", "GET /b 0"]),
    ),
    case(
        "http10-keep-alive-then-11",
        "9112 9.3",
        "an HTTP/1.0 keep-alive request, then an HTTP/1.1 one",
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET_B,
        expect=answer(200, 200, served=["GET /a 0", "GET /b 0"]),
    ),
    case(
        "get-with-body",
        "9110 9.3.1, 9112 6.3",
        "a GET with a Content-Length body holding a request: the body is read",
        msg(b"GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: {n}", HIDDEN),
        expect=answer(200, served=[f"GET /a {N}"]),
    ),
    case(
        "close-then-hidden",
        "9112 9.6",
        "after a request with Connection: close the server MUST NOT process more",
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + HIDDEN,
        expect=answer(200, close=True, served=["GET /a 0"]),
        tornado="runs the pipelined request after the close (its answer is never sent)",
    ),
    case(
        "http10-then-hidden",
        "9112 9.3, 9.6",
        "an HTTP/1.0 request without keep-alive ends the connection: nothing after it runs",
        b"GET /a HTTP/1.0\r\n\r\n" + HIDDEN,
        expect=answer(200, close=True, served=["GET /a 0"]),
        tornado="runs the pipelined request after the close (its answer is never sent)",
    ),
    case(
        "chunked-then-get",
        "9112 7.1, 9.3.2",
        "a chunked POST and a GET in one packet",
        msg(b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked", chunked(b"hello"))
        + GET_B,
        expect=answer(200, 200, served=["POST /a 5", "GET /b 0"]),
    ),
]


@pytest.fixture(scope="module", params=KINDS)
def server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    yield from echo_server(request, tmp_path_factory)


@pytest.mark.parametrize("c", params(CASES))
def test_pipelined_requests_are_answered_in_order_and_nothing_runs_after_a_close(
    server: EchoServer, c: Case
) -> None:
    check(server, c)
