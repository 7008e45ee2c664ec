"""The fast server speaks HTTP/1.x as Tornado's HTTPServer does: keep-alive and close,
HTTP/1.0, pipelining, chunked bodies both ways, streamed uploads, 100-continue, limits,
and the same 400 answers for malformed or smuggling requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tornado
from fast_http_apps import application
from fast_http_support import GET, serving, until
from tornado.httpclient import AsyncHTTPClient

pytestmark = pytest.mark.timeout(20)

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
REFUSED = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"
"""A request refused after its headers were read (its body perhaps still coming)."""


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_keep_alive_serves_several_requests_on_one_connection_and_close_ends_it() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            for _ in range(3):
                raw.send(GET)
                status, headers, body = await raw.response()
                assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")
                assert "connection" not in headers
            raw.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, headers, body = await raw.response()
            assert headers["connection"] == "close" and body == b"hello"
            assert await raw.closed()
            assert served.server.requests == 4

    run(main)


def test_http_10_closes_unless_keep_alive_is_asked_for() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            reply = await served.exchange(b"GET /chunks HTTP/1.0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 200 OK")
            assert b"Transfer-Encoding" not in reply  # no chunking for a 1.0 client
            assert reply.endswith(b"\r\n\r\none,two,three")
            raw = await served.connect()
            raw.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            _, headers, body = await raw.response()
            assert headers["connection"] == "Keep-Alive" and body == b"hello"
            raw.send(b"GET / HTTP/1.0\r\n\r\n")
            assert (await raw.response())[2] == b"hello"
            assert await raw.closed()

    run(main)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(
                b"GET /sleep?s=0.3&name=first HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
                b"GET /sleep?s=0.05&name=third HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            bodies = [(await raw.response())[2] for _ in range(3)]
            assert bodies == [b"first", b"got:second", b"third"]

    run(main)


def test_chunked_request_and_response_bodies() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n"
            )
            assert (await raw.response())[2] == b"got:wikipedia"
            raw.send(b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
            _, headers, body = await raw.response()
            assert headers["transfer-encoding"] == "chunked"
            assert body == b"one,two,three"
            response = await AsyncHTTPClient().fetch(served.url + "/chunks")
            assert response.body == b"one,two,three"

    run(main)


def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
            head = await raw.reader.readuntil(b"\r\n\r\n")
            assert b"Content-Length: 5" in head
            assert (await raw.response())[2] == b"hello"  # the next response, not a body

    run(main)


def test_streamed_upload_reaches_data_received_and_set_max_body_size_applies() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            body = b"x" * 300_000
            response = await AsyncHTTPClient().fetch(
                served.url + "/upload", method="PUT", body=body
            )
            assert response.body.endswith(b"300000 bytes")
            reply = await served.exchange(
                b"PUT /small-upload HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\n" + b"y" * 20
            )
            assert reply == REFUSED
            chunked = b"PUT /small-upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            reply = await served.exchange(chunked + b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
            assert reply == REFUSED

    run(main)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 (Continue)\r\n\r\n"
            raw.send(b"body")
            assert (await raw.response())[2] == b"got:body"

    run(main)


def test_max_body_size_refuses_a_larger_content_length_with_400() -> None:
    async def main() -> None:
        async with serving(application(), max_body_size=100) as served:
            reply = await served.exchange(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n" + b"z" * 101
            )
            assert reply == REFUSED
            ok = await served.exchange(
                b"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 100\r\n\r\n"
                + b"z" * 100
            )
            assert ok.endswith(b"got:" + b"z" * 100)

    run(main)


@pytest.mark.parametrize("pieces", [1, 3], ids=["one-packet", "trickled"])
def test_headers_over_max_header_size_are_refused_with_431(pieces: int) -> None:
    async def main() -> None:
        async with serving(application(), max_header_size=1024) as served:
            raw = await served.connect()
            request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * 2000 + b"\r\n\r\n"
            step = len(request) // pieces + 1
            for start in range(0, len(request), step):
                raw.send(request[start : start + step])
                await asyncio.sleep(0.05)
            reply = await raw.read_all()
            assert reply.startswith(b"HTTP/1.1 431 ")
            small = await served.exchange(
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Filler: "
                + b"a" * 500
                + b"\r\n\r\n"
            )
            assert small.endswith(b"hello")

    run(main)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            id="content-length-and-transfer-encoding",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nhello",
            id="two-content-lengths",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
            id="bad-chunk-size",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            id="transfer-coding-other-than-chunked",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", id="folded-header"),
        pytest.param(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", id="http-2-request-line"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n",
            id="two-hosts",
            marks=pytest.mark.skipif(
                tornado.version_info < (6, 5), reason="Tornado refuses two Hosts since 6.5"
            ),
        ),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-on-plain-port"),
    ],
)
def test_malformed_and_smuggling_requests_get_400_and_a_close(request_bytes: bytes) -> None:
    async def main() -> None:
        async with serving(application()) as served:
            # Refused by the parser: Tornado's bare 400; refused by the application's
            # request checks (two Hosts): the 400 announces the close.
            expected = REFUSED if b"Host: a,b" in request_bytes else BAD_REQUEST
            assert await served.exchange(request_bytes) == expected
            await until(lambda: served.server.connection_count == 0)
            assert served.server.requests <= 1  # only a two-Host request reaches the app

    run(main)


def test_a_valid_request_before_a_malformed_one_is_still_answered() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            reply = await served.exchange(
                GET + b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n"
            )
            assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"hello" + BAD_REQUEST)

    run(main)


def test_bare_lf_line_endings_are_accepted_like_tornado() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            reply = await served.exchange(b"GET / HTTP/1.1\nHost: t\nConnection: close\n\n")
            assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"hello")

    run(main)


@pytest.mark.parametrize("method", [b"FOO", b"get", b"PROPFINDX"])
def test_unknown_method_tokens_reach_the_application_which_answers_405(method: bytes) -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(method[:2])  # the token may arrive in pieces
            await asyncio.sleep(0.05)
            raw.send(method[2:] + b" / HTTP/1.1\nHost: t\n\n")
            status, _, _ = await raw.response()
            assert status == b"HTTP/1.1 405 Method Not Allowed"
            raw.send(GET)  # the connection goes on
            assert (await raw.response())[2] == b"hello"

    run(main)


def test_no_keep_alive_closes_after_each_response() -> None:
    async def main() -> None:
        async with serving(application(), no_keep_alive=True) as served:
            reply = await served.exchange(GET + GET)
            assert reply.count(b"HTTP/1.1 200 OK") == 1
            assert b"Connection: close" in reply and reply.endswith(b"hello")

    run(main)


def test_whitespace_around_header_values_is_dropped_like_tornado() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            reply = await served.exchange(
                b"POST / HTTP/1.1\r\nHost:   t \t\r\nContent-Length: 2  \r\n"
                b"Connection: close \r\n\r\nok"
            )
            assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"got:ok")

    run(main)
