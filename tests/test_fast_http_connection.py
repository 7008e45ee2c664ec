"""Connection semantics of HTTP/1.1, raw bytes against both servers side by side: the fast
server (`--http fast`) and Tornado's (`--http tornado`). Keep-alive and close, the
`Connection` option list, `Expect: 100-continue`, early answers. Each test states its RFC
9110/9112 expectation; where Tornado's server breaks it, the test says so and expects what
each server does (see docs/fast-http-deviations.md). After each trick that leaves the
connection open, a normal request on the same connection must get exactly one answer."""

from __future__ import annotations

import pytest
from framing_support import (
    CHUNKED_HELLO,
    GET_10,
    KINDS,
    answered_again,
    head_of,
    run,
    serving_kind,
)

pytestmark = pytest.mark.timeout(20)


@KINDS
def test_http_10_request_with_transfer_encoding_is_answered_then_the_connection_closes(
    kind: str,
) -> None:
    """RFC 9112 section 6.1: a server that receives an HTTP/1.0 message with
    Transfer-Encoding MUST treat its framing as faulty and close the connection after
    answering it. Tornado keeps the connection (and says `Connection: Keep-Alive`)."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO
            )
            _, headers, body = await raw.response()
            assert body == b"got:hello"
            if kind == "fast":
                assert "connection" not in headers
                assert await raw.closed()
            else:
                assert headers["connection"] == "Keep-Alive"
                await answered_again(raw, GET_10)

    run(main)


@KINDS
def test_http_10_keep_alive_answer_without_a_length_ends_with_the_connection(kind: str) -> None:
    """RFC 9112 sections 6.3 and 9.3: a response body without Content-Length (and no
    chunking for an HTTP/1.0 client) ends only with the connection, so the connection cannot
    persist. Tornado answers `Connection: Keep-Alive` and keeps it open: the client cannot
    find the end of the body."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"GET /chunks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head = await head_of(raw)
            assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
            if kind == "fast":
                assert b"Connection" not in head
                assert await raw.read_all() == b"one,two,three"
            else:
                assert b"\r\nConnection: Keep-Alive\r\n" in head

    run(main)


@KINDS
@pytest.mark.parametrize(
    ("version", "connection", "persists"),
    [
        ("1.1", "TE, close", False),
        ("1.1", "close, TE", False),
        ("1.1", "Keep-Alive, Upgrade", True),
        ("1.0", "keep-alive, foo", True),
        ("1.0", "Keep-Alive, close", False),
    ],
)
def test_the_connection_header_is_a_list_of_options(
    kind: str, version: str, connection: str, persists: bool
) -> None:
    """RFC 9110 section 7.6.1: Connection is a comma-separated list of options; RFC 9112
    section 9.3: "close" among them ends the connection, and "keep-alive" among them keeps an
    HTTP/1.0 one. Tornado compares the whole value, so only a lone option counts there."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            extra = b"TE: trailers\r\n" if "TE" in connection else b""
            raw.send(
                f"GET / HTTP/{version}\r\nHost: t\r\nConnection: {connection}\r\n".encode()
                + extra
                + b"\r\n"
            )
            _, headers, body = await raw.response()
            assert body == b"hello"
            tornado_persists = connection.lower() != "close" if version == "1.1" else False
            if persists if kind == "fast" else tornado_persists:
                assert headers.get("connection") != "close"
                await answered_again(raw)
            else:
                if version == "1.1" and kind == "fast":
                    assert headers["connection"] == "close"
                assert await raw.closed()

    run(main)


@KINDS
def test_a_handlers_own_connection_close_ends_the_connection(kind: str) -> None:
    """RFC 9112 section 9.6: a server that sends the "close" option MUST initiate closure
    after that response. Tornado sends the handler's `Connection: close` and keeps the
    connection open."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"GET /closes HTTP/1.1\r\nHost: t\r\n\r\n")
            _, headers, body = await raw.response()
            assert (headers["connection"], body) == ("close", b"bye")
            if kind == "fast":
                assert await raw.closed()
            else:
                await answered_again(raw)

    run(main)


@KINDS
def test_expect_100_continue_is_matched_case_insensitively(kind: str) -> None:
    """RFC 9110 section 10.1.1: the expectation is `100-continue`, case-insensitive, so
    `100-Continue` gets its interim 100 before the body is sent. Tornado matches the exact
    lower-case spelling and sends no 100."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                b"Expect: 100-Continue\r\n\r\n"
            )
            if kind == "fast":
                assert await head_of(raw) == b"HTTP/1.1 100 (Continue)\r\n\r\n"
            raw.send(b"hello")
            status, _, body = await raw.response()  # tornado: no 100 came before it
            assert (status, body) == (b"HTTP/1.1 200 OK", b"got:hello")
            await answered_again(raw)

    run(main)


@KINDS
def test_an_http_10_client_gets_no_100_continue(kind: str) -> None:
    """RFC 9110 section 10.1.1: a server that receives a 100-continue expectation in an
    HTTP/1.0 request MUST ignore it (1xx responses are not defined for HTTP/1.0). Tornado
    sends `HTTP/1.1 100 (Continue)` to it."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
            )
            reply = await raw.read_all()
            interim = reply.startswith(b"HTTP/1.1 100 (Continue)\r\n\r\n")
            assert interim == (kind == "tornado")
            assert reply.endswith(b"\r\n\r\ngot:hello")

    run(main)


@KINDS
def test_an_answer_given_before_the_body_was_read_says_connection_close(kind: str) -> None:
    """RFC 9112 section 9.3: a server MUST read the whole body or close the connection after
    its response; section 9.6: a sender SHOULD say `Connection: close` when it will close.
    Both servers close after a handler answers 413 without reading the body; only the fast
    server says so (Tornado leaves the client to find out)."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"POST /refuses HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nxxxx")
            status, headers, body = await raw.response()
            # The reason phrase is Python's: "Content Too Large" from 3.13 on.
            assert (status[:13], body) == (b"HTTP/1.1 413 ", b"too big")
            assert ("connection" in headers) == (kind == "fast")
            assert await raw.closed()

    run(main)


@KINDS
def test_a_content_length_over_the_limit_gets_400_and_the_fast_server_says_close(
    kind: str,
) -> None:
    """RFC 9112 section 9.6, as above, for the server's own refusal of a Content-Length over
    --max-body-size (both answer 400, as Tornado always has, and close unread)."""

    async def main() -> None:
        async with serving_kind(kind, max_body_size=10) as served:
            reply = await served.exchange(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello"
            )
            close = b"Connection: close\r\n" if kind == "fast" else b""
            assert reply == b"HTTP/1.1 400 Bad Request\r\n" + close + b"\r\n"

    run(main)
