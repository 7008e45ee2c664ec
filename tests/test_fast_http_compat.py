"""What Tornado applications reach beyond the HTTPConnection interface, on the fast server:
`request.connection.stream` (raw writes, close), Upgrade requests a handler does not take
over, and `detach()` handing the connection and its unread bytes to a WebSocket."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import ssl
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import tornado.test
import tornado.web
import tornado.websocket
from fast_http_apps import application
from fast_http_support import GET, serving, until
from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import HTTPServerRequest
from tornado_run.runner.worker.fast.ends import request_end
from tornado_run.runner.worker.fast.parsing import RequestParser

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


class TakeOver(tornado.web.RequestHandler):
    """Takes the connection over (detach) once its request is read, then answers, on the
    raw stream, the next `size` bytes the client sent: `took:<bytes>`."""

    async def get(self) -> None:
        await _take_over(self)

    async def post(self) -> None:
        await _take_over(self)


@tornado.web.stream_request_body
class TakeOverBeforeTheBody(tornado.web.RequestHandler):
    """Takes the connection over before reading the body: the body is for the stream."""

    async def prepare(self) -> None:
        await _take_over(self)


async def _take_over(handler: tornado.web.RequestHandler) -> None:
    size = int(handler.get_argument("size"))
    stream = handler.detach()
    data = await stream.read_bytes(size)
    await stream.write(b"took:" + data)
    stream.close()


def _take_over_app() -> tornado.web.Application:
    return tornado.web.Application([("/take", TakeOver), ("/take-body", TakeOverBeforeTheBody)])


KINDS = pytest.mark.parametrize("kind", ["fast", "tornado"])
PIPELINED = b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"


@KINDS
@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        pytest.param(b"GET /take?size=5 HTTP/1.1\r\nHost: t\r\n\r\nhello", b"hello", id="get"),
        pytest.param(
            b"GET /take?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % len(PIPELINED) + PIPELINED,
            PIPELINED,
            id="a-pipelined-request",
        ),
        pytest.param(
            b"GET /take?size=11 HTTP/1.1\r\nHost: t\r\n\r\n\x00\x01 not http",
            b"\x00\x01 not http",
            id="bytes-that-are-not-http",
        ),
        pytest.param(
            b"POST /take?size=5 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabchello",
            b"hello",
            id="after-a-body",
        ),
        pytest.param(
            b"POST /take?size=5 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\nhello",
            b"hello",
            id="after-a-chunked-body",
        ),
        pytest.param(
            b"POST /take?size=5 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (3 << 20)
            + b"b" * (3 << 20)
            + b"hello",
            b"hello",
            id="after-a-body-larger-than-what-is-kept",
        ),
        pytest.param(
            b"\r\nGET /take?size=5 HTTP/1.1\nHost: t\n\nhello", b"hello", id="bare-lf-request"
        ),
        pytest.param(
            b"POST /take?size=5 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 3\r\n\r\nabchello",
            b"hello",
            id="after-the-body-of-an-upgrade-request",
        ),
        pytest.param(
            b"POST /take?size=5 HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nhello",
            b"hello",
            id="after-the-chunked-body-of-an-upgrade-request",
        ),
        pytest.param(
            b"POST /take-body?size=8 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabchello",
            b"abchello",
            id="before-the-body",
        ),
        pytest.param(
            b"POST /take-body?size=13 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\n\r\n",
            id="before-a-chunked-body",
        ),
    ],
)
def test_detach_hands_over_every_byte_the_client_sent_after_the_request(
    kind: str, sent: bytes, expected: bytes
) -> None:
    async def main() -> None:
        async with serving(_take_over_app(), kind) as served:
            assert await served.exchange(sent) == b"took:" + expected
            raw = await served.connect()  # the bytes sent in pieces, after the request
            raw.send(sent[: -len(expected) // 2])
            await asyncio.sleep(0.05)
            raw.send(sent[-len(expected) // 2 :])
            assert await raw.read_all() == b"took:" + expected

    run(main)


@KINDS
def test_detach_after_pipelined_requests_hands_over_only_what_follows(kind: str) -> None:
    async def main() -> None:
        app = tornado.web.Application([("/take", TakeOver), ("/", tornado.web.RequestHandler)])
        async with serving(app, kind) as served:
            first = b"POST /take?size=4 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
            reply = await served.exchange(first * 2 + b"tail")
            assert reply == b"took:POST"  # the second request is the stream's

    run(main)


@KINDS
def test_detach_behind_an_upgrade_request_with_a_chunked_body_gets_what_follows(
    kind: str,
) -> None:
    """An `Upgrade:` request with a chunked body is answered as a plain request; a request
    pipelined behind it that detaches gets the bytes after itself."""

    async def main() -> None:
        app = tornado.web.Application([("/take", TakeOver), ("/", tornado.web.RequestHandler)])
        async with serving(app, kind) as served:
            first = (
                b"POST / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            )
            second = b"GET /take?size=4 HTTP/1.1\r\nHost: t\r\n\r\n"
            reply = await served.exchange(first + second + b"tail")
            assert reply.startswith(b"HTTP/1.1 405 ")
            assert reply.endswith(b"took:tail")

    run(main)


@KINDS
def test_a_detached_stream_reads_lines_and_to_the_close_and_reports_the_close(kind: str) -> None:
    seen: list[Any] = []

    class Lines(tornado.web.RequestHandler):
        async def get(self) -> None:
            stream = self.detach()
            after: Any = self.request.connection.stream  # type: ignore[union-attr]
            assert after is (stream if kind == "fast" else None)  # Tornado's is None
            stream.set_close_callback(lambda: seen.append("close callback"))
            seen.append(stream.fileno().fileno() > 2)  # IOStream's fileno() is the socket
            line = await stream.read_until(b"\n")
            await stream.write(b"line:" + line)
            seen.append(await stream.read_until_regex(rb"[0-9]+;"))
            seen.append(await stream.read_until_close())

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Lines)]), kind) as served:
            raw = await served.connect()
            raw.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nhello\nab12;")
            assert await raw.reader.readexactly(11) == b"line:hello\n"
            raw.send(b"the rest")
            raw.writer.write_eof()
            await until(lambda: len(seen) == 4)
            assert seen == [True, b"ab12;", b"the rest", "close callback"]

    run(main)


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0.1)
        self.write("slow")


@KINDS
def test_an_upgrade_pipelined_behind_a_slow_request_still_gets_the_bytes_after_it(
    kind: str,
) -> None:
    async def main() -> None:
        app = tornado.web.Application([("/slow", Slow), ("/ws", Echo)])
        async with serving(app, kind) as served:
            raw = await served.connect()
            raw.send(
                b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                + base64.b64encode(os.urandom(16))
                + b"\r\n\r\n"
                + _masked_text_frame(b"early")
            )
            assert (await raw.response())[2] == b"slow"
            head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            frame = await asyncio.wait_for(raw.reader.readexactly(7), 5)
            assert frame == b"\x81\x05early"

    run(main)


STREAM = [  # requests one after another, as a client may send them
    b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"FOO /d HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    b"\r\nGET /e HTTP/1.1\nHost: t\n\n",
    b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n",
]


@pytest.mark.parametrize("seed", range(20))
def test_where_each_request_ends_is_found_however_the_bytes_were_split(seed: int) -> None:
    """`request_end` (what detach() relies on) against ends known by construction: every
    request split over packets at random points, pipelined ones sharing a packet."""
    rng = random.Random(seed)
    new_parser = partial(RequestParser, max_header_size=65536)
    data = b"".join(STREAM)
    cuts = sorted(rng.sample(range(1, len(data)), 12))
    starts = [sum(map(len, STREAM[:i])) for i in range(len(STREAM))]
    cuts = sorted({*cuts, starts[3], starts[4]})  # llhttp refuses those two: parsed again
    packets = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for number, request in enumerate(STREAM, 1):
        start = starts[number - 1]
        head = request.lstrip(b"\r\n")
        head_end = (
            start + len(request) - len(head) + head.index(b"\n\n" if b"/e" in head else b"\r\n\r\n")
        )
        head_end += 2 if b"/e" in head else 4
        assert request_end(packets, number, True, new_parser) == start + len(request)
        assert request_end(packets, number, False, new_parser) == head_end
    assert request_end(packets, len(STREAM) + 1, True, new_parser) is None


@KINDS
@pytest.mark.parametrize("leaves", ["close", "half-close"])
def test_a_close_callback_set_on_the_connections_stream_runs_when_the_client_leaves(
    kind: str, leaves: str
) -> None:
    """A client that only shuts down its sending side looks gone too: Tornado's stream
    closes at the end of its data, and the fast server keeps the socket open only to send
    the answer."""
    closed = asyncio.Event()

    class Waits(tornado.web.RequestHandler):
        async def get(self) -> None:
            stream: Any = self.request.connection.stream  # type: ignore[union-attr]
            stream.set_close_callback(closed.set)  # an old idiom for long polling
            await asyncio.wait([asyncio.ensure_future(closed.wait())], timeout=5)

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Waits)]), kind) as served:
            raw = await served.connect()
            raw.send(GET)
            await asyncio.sleep(0.1)
            if leaves == "close":
                raw.writer.close()
            else:
                raw.writer.write_eof()
            await asyncio.wait_for(closed.wait(), 2)

    run(main)


@KINDS
def test_trailer_fields_past_the_header_limit_are_refused_not_held(kind: str) -> None:
    """Trailer fields after the last chunk count against --max-header-size: a client
    cannot make the server hold an endless trailer section (Tornado takes none: 400)."""
    served: list[bytes] = []

    class Upload(tornado.web.RequestHandler):
        def post(self) -> None:
            served.append(self.request.body)

    trailers = b"X-Pad: " + b"y" * 100 + b"\r\n"
    request = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"

    async def main() -> None:
        app = tornado.web.Application([("/", Upload)])
        async with serving(app, kind, max_header_size=1024) as server:
            answer = await server.exchange(request + trailers * 12 + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 431 " if kind == "fast" else b"HTTP/1.1 400 ")
            last = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            ok = await server.exchange(request + trailers * 2 + b"\r\n" + last)
            assert ok.startswith(b"HTTP/1.1 200 " if kind == "fast" else b"HTTP/1.1 400 ")
        assert served == ([b"hello"] if kind == "fast" else [])

    run(main)


@KINDS
@pytest.mark.parametrize("split", [None, 2, 5, 60])
def test_a_chunk_larger_than_the_body_limit_is_refused_before_its_data_comes(
    kind: str, split: int | None
) -> None:
    """A chunk whose size is over --max-body-size gets its 400 at once (as on Tornado),
    its size line in one packet or split over two, while a handler that raises its own
    limit in prepare() still takes a chunk that size."""
    taken: list[int] = []

    @tornado.web.stream_request_body
    class Roomy(tornado.web.RequestHandler):
        def prepare(self) -> None:
            self.request.connection.set_max_body_size(1 << 30)  # type: ignore[union-attr]

        def data_received(self, chunk: bytes) -> None:
            taken.append(len(chunk))

        def post(self) -> None:
            self.write("taken")

    head = b"POST /%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    size_line = b"%x\r\n" % (2 << 20)

    async def main() -> None:
        app = tornado.web.Application([("/roomy", Roomy)])
        async with serving(app, kind, max_body_size=1 << 20) as server:
            raw = await server.connect()
            data = head % b"small" + size_line + b"abc"
            cut = len(data) - 3 - (split or 0)
            raw.send(data[:cut])
            await asyncio.sleep(0.05)
            raw.send(data[cut:])
            status, _, _ = await raw.response(timeout=2)
            assert status.startswith(b"HTTP/1.1 400 ")
            assert await raw.closed()
            raw = await server.connect()
            raw.send(head % b"roomy" + size_line + b"abc")
            await until(lambda: sum(taken) == 3)

    run(main)
