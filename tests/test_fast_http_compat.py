"""What Tornado applications reach beyond the HTTPConnection interface, on the fast server:
`request.connection.stream` (raw writes, close), Upgrade requests a handler does not take
over, and `detach()` handing the connection and its unread bytes to a WebSocket."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tornado.test
import tornado.web
import tornado.websocket
from fast_http_apps import application
from fast_http_support import GET, serving
from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import HTTPServerRequest

pytestmark = pytest.mark.timeout(20)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_connection_stream_writes_raw_bytes_and_closes() -> None:
    def app(request: HTTPServerRequest) -> None:
        stream: Any = request.connection.stream  # type: ignore[union-attr]
        future = stream.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
        future.add_done_callback(lambda _: stream.close())

    async def main() -> None:
        async with serving(app) as served:  # type: ignore[arg-type]
            reply = await served.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw"

    run(main)


def test_an_upgrade_request_a_handler_answers_normally_keeps_the_connection_going() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + GET
            )
            assert (await raw.response())[2] == b"hello"
            assert (await raw.response())[2] == b"hello"  # parsed from the upgrade's leftover
            raw.send(GET)
            assert (await raw.response())[2] == b"hello"

    run(main)


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


def _masked_text_frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + body


def test_detach_hands_a_websocket_the_connection_and_the_bytes_read_past_the_upgrade() -> None:
    pytest.importorskip("tornado_run.runner.worker.fast.stream")

    async def main() -> None:
        app = tornado.web.Application([("/ws", Echo)])
        async with serving(app) as served:
            raw = await served.connect()
            key = base64.b64encode(os.urandom(16))
            raw.send(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                + key
                + b"\r\n\r\n"
                + _masked_text_frame(b"early")  # in the same packet as the upgrade
            )
            head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            frame = await asyncio.wait_for(raw.reader.readexactly(7), 5)
            assert frame == b"\x81\x05early"
            assert served.server.connection_count == 0  # no longer an HTTP connection

    run(main)


def _tls_context() -> ssl.SSLContext:
    """A server context with the certificate Tornado's own test suite ships."""
    folder = Path(tornado.test.__file__).parent
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "test.crt", folder / "test.key")
    return context


def test_with_an_ssl_context_connections_are_tls_and_requests_say_https() -> None:
    async def main() -> None:
        async with serving(application(), ssl_context=_tls_context()) as served:
            plain = await served.connect()  # a client that does not speak TLS
            plain.send(GET)
            assert await plain.read_all() == b""
            url = f"https://127.0.0.1:{served.port}/ip"
            for _ in range(2):  # the failed handshake above did not hurt the server
                response = await AsyncHTTPClient().fetch(url, validate_cert=False)
                assert response.body == b"127.0.0.1 https"

    run(main)


def test_an_upgrade_request_with_a_body_is_served_as_a_plain_request() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            raw.send(b"POST / HTTP/1.1\r\nHost: t\r\n" + upgrade + b"Content-Length: 5\r\n\r\nab")
            await asyncio.sleep(0.05)
            raw.send(b"cde" + GET)  # the rest of the body, then the next request
            assert (await raw.response())[2] == b"got:abcde"
            assert (await raw.response())[2] == b"hello"

    run(main)
