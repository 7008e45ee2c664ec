"""TransportStream: an IOStream stand-in over an asyncio transport, so a connection upgraded
by the fast HTTP server can be handed to Tornado's WebSocket protocol. Real loopback
connections (plain and TLS), Tornado's own WebSocket client and handler."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest
import tornado.iostream
import tornado.test
import tornado.web
import tornado.websocket
import uvloop
from tornado import httputil
from tornado.concurrent import Future
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado_run.runner.worker.fast.stream import TransportStream

pytestmark = pytest.mark.timeout(20)

CERTS = os.path.dirname(tornado.test.__file__)
OnHead = Callable[[asyncio.Transport, bytes, bytes], None]


class HeadProtocol(asyncio.Protocol):
    """Reads one request head, then calls `on_head(transport, head, rest)` and stops
    reading for itself: what the fast server does when a request upgrades."""

    def __init__(self, on_head: OnHead) -> None:
        self.on_head = on_head
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if sep and self.transport is not None:
            self.transport.pause_reading()  # as a server that stops parsing would
            self.on_head(self.transport, head, rest)


def server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(CERTS, "test.crt"), os.path.join(CERTS, "test.key"))
    return context


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@asynccontextmanager
async def serving(on_head: OnHead, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HeadProtocol(on_head), "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def stream_pair(
    first: bytes = b"", tls: bool = False, **kwargs: Any
) -> AsyncIterator[tuple[TransportStream, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A TransportStream on the server side of a loopback connection whose client sent
    `first` right after its request head, and the client's reader and writer."""
    streams: asyncio.Queue[TransportStream] = asyncio.Queue()

    def on_head(transport: asyncio.Transport, head: bytes, rest: bytes) -> None:
        streams.put_nowait(TransportStream(transport, rest, **kwargs))

    async with serving(on_head, server_tls() if tls else None) as port:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_tls() if tls else None
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" + first)
        stream = await asyncio.wait_for(streams.get(), 5)
        try:
            yield stream, reader, writer
        finally:
            writer.close()
            stream.close()


async def until(done: Callable[[], bool]) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 5 s")


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,  # the worker's loop where installed (--loop auto)
}
_loop_factory = asyncio.new_event_loop


@pytest.fixture(autouse=True, params=list(LOOPS))
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs on asyncio's loop and on uvloop (whose transports differ)."""
    global _loop_factory
    _loop_factory = LOOPS[request.param]
    yield
    _loop_factory = asyncio.new_event_loop


def run(main: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        runner.run(asyncio.wait_for(main(), 15))


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_bytes_read_past_the_request_head_come_first_then_the_socket(tls: bool) -> None:
    async def main() -> None:
        async with stream_pair(b"abc", tls=tls) as (stream, _, writer):
            writer.write(b"def")
            assert await stream.read_bytes(6) == b"abcdef"
            assert not stream.reading()

    run(main)


def test_partial_read_returns_what_is_buffered_up_to_the_size_asked() -> None:
    async def main() -> None:
        async with stream_pair(b"abcdef") as (stream, _, writer):
            assert await stream.read_bytes(4, partial=True) == b"abcd"
            assert await stream.read_bytes(100, partial=True) == b"ef"
            pending = stream.read_bytes(3, partial=True)
            assert not pending.done()
            writer.write(b"g")
            assert await pending == b"g"

    run(main)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_written_data_reaches_the_client_and_the_write_future_resolves(tls: bool) -> None:
    async def main() -> None:
        async with stream_pair(tls=tls) as (stream, reader, _):
            await stream.write(b"hello ")
            await stream.write(memoryview(b"world"))
            assert await reader.readexactly(11) == b"hello world"

    run(main)


def test_client_close_fails_the_pending_read_and_runs_the_close_callback_once() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, _, writer):
            calls: list[str] = []
            stream.set_close_callback(lambda: calls.append("closed"))
            pending = stream.read_bytes(10)
            writer.close()
            with pytest.raises(StreamClosedError):
                await pending
            assert stream.closed()
            await until(lambda: bool(calls))
            stream.close()
            await asyncio.sleep(0.05)
            assert calls == ["closed"]
            with pytest.raises(StreamClosedError):
                stream.write(b"x")
            with pytest.raises(StreamClosedError):
                stream.read_bytes(1)

    run(main)


def test_data_sent_before_the_client_closed_can_still_be_read() -> None:
    async def main() -> None:
        async with stream_pair(b"last words") as (stream, _, writer):
            writer.close()
            await until(stream.closed)
            assert await stream.read_bytes(4) == b"last"
            assert await stream.read_bytes(6) == b" words"

    run(main)


def test_read_until_and_read_until_regex_return_up_to_the_delimiter() -> None:
    async def main() -> None:
        async with stream_pair(b"one\r\ntwo;") as (stream, _, writer):
            assert await stream.read_until(b"\r\n") == b"one\r\n"
            assert await stream.read_until_regex(rb"[;,]") == b"two;"
            pending = stream.read_until(b"\n")
            writer.write(b"thr")
            await asyncio.sleep(0.05)
            assert not pending.done()
            writer.write(b"ee\nrest")
            assert await pending == b"three\n"
            assert await stream.read_bytes(4) == b"rest"

    run(main)


@pytest.mark.parametrize("regex", [False, True], ids=["read_until", "read_until_regex"])
def test_a_delimiter_not_within_max_bytes_closes_the_stream(regex: bool) -> None:
    async def main() -> None:
        async with stream_pair() as (stream, reader, writer):
            if regex:
                pending = stream.read_until_regex(rb"\n", max_bytes=8)
            else:
                pending = stream.read_until(b"\n", max_bytes=8)
            writer.write(b"0123456789")
            with pytest.raises(StreamClosedError):
                await pending
            assert stream.closed()
            assert isinstance(stream.error, tornado.iostream.UnsatisfiableReadError)
            assert await reader.read() == b""

    run(main)


def test_read_until_close_returns_everything_once_the_client_closes() -> None:
    async def main() -> None:
        async with stream_pair(b"first ") as (stream, _, writer):
            pending = stream.read_until_close()
            writer.write(b"second")
            await asyncio.sleep(0.05)
            assert not pending.done()
            writer.close()
            assert await pending == b"first second"
            assert await stream.read_until_close() == b""  # closed: at once

    run(main)


def test_fileno_gives_the_socket_as_iostream_does() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, _, _):
            sock = stream.transport.get_extra_info("socket")
            assert stream.fileno().fileno() == sock.fileno() > 2

    run(main)


def test_server_close_ends_the_connection_after_sending_what_was_written() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, reader, _):
            stream.write(b"bye")
            stream.close()
            assert stream.closed()
            assert await reader.read() == b"bye"

    run(main)


def test_write_future_waits_while_the_client_does_not_read() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, reader, _):
            chunk = b"x" * 65536
            sent = 0
            future = stream.write(chunk)
            sent += len(chunk)
            while future.done() and sent < 256 * 1024 * 1024:
                future = stream.write(chunk)
                sent += len(chunk)
            assert not future.done(), "the transport never paused"
            assert stream.writing()
            received = 0
            while received < sent:
                received += len(await reader.read(1 << 20))
            await asyncio.wait_for(future, 5)
            assert received == sent

    run(main)


def test_a_transport_already_full_when_handed_over_holds_back_the_first_write() -> None:
    async def main() -> None:
        streams: asyncio.Queue[TransportStream] = asyncio.Queue()
        chunk = b"z" * 65536
        sent = 0

        def on_head(transport: asyncio.Transport, head: bytes, rest: bytes) -> None:
            nonlocal sent
            _, high = transport.get_write_buffer_limits()
            while transport.get_write_buffer_size() <= high and sent < 256 * 1024 * 1024:
                transport.write(chunk)  # the HTTP side's last response, to a slow reader
                sent += len(chunk)
            streams.put_nowait(TransportStream(transport, rest))

        async with serving(on_head) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            stream = await asyncio.wait_for(streams.get(), 5)
            future = stream.write(b"!")
            assert not future.done()
            received = 0
            while received < sent + 1:
                received += len(await reader.read(1 << 20))
            await asyncio.wait_for(future, 5)
            writer.close()
            stream.close()

    run(main)


def test_pending_write_fails_when_the_stream_closes() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, _, _):
            future = stream.write(b"x")
            while future.done():
                future = stream.write(b"x" * 65536)
            stream.close()
            with pytest.raises(StreamClosedError):
                await future

    run(main)


def test_reading_pauses_while_unread_data_piles_up_and_resumes_for_a_read() -> None:
    async def main() -> None:
        async with stream_pair(read_high_water=1024) as (stream, _, writer):
            transport = stream.transport
            writer.write(b"y" * 4096)
            await until(lambda: not transport.is_reading())
            data = await stream.read_bytes(4096)
            assert data == b"y" * 4096
            assert transport.is_reading()

    run(main)


def test_a_read_larger_than_the_buffer_limit_closes_the_stream() -> None:
    async def main() -> None:
        async with stream_pair(max_buffer_size=1000) as (stream, reader, _):
            with pytest.raises(StreamClosedError):
                stream.read_bytes(1001)
            assert isinstance(stream.error, StreamBufferFullError)
            assert await reader.read() == b""

    run(main)


def test_set_nodelay_sets_tcp_nodelay() -> None:
    async def main() -> None:
        async with stream_pair() as (stream, _, _):
            sock = stream.transport.get_extra_info("socket")
            stream.set_nodelay(True)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            stream.set_nodelay(False)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0

    run(main)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_socket_gives_the_peer_address_and_on_tls_the_session(tls: bool) -> None:
    async def main() -> None:
        async with stream_pair(tls=tls) as (stream, _, writer):
            client_address = writer.get_extra_info("sockname")
            if tls:
                assert stream.socket.cipher() is not None
                assert stream.socket.getpeercert() is None  # the client sent no certificate
            else:
                assert stream.socket.getpeername() == client_address

    run(main)


# A real Tornado WebSocket handshake: the request is driven through Tornado's delegate
# interfaces on a minimal HTTPConnection whose detach() gives a TransportStream.


class OneRequestConnection(httputil.HTTPConnection):
    """Writes one response straight to the transport; detach() hands the rest over."""

    def __init__(self, transport: asyncio.Transport, rest: bytes, protocol: str) -> None:
        self.transport = transport
        self.rest = rest
        self.context = SimpleNamespace(remote_ip="127.0.0.1", protocol=protocol)

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        lines = [f"HTTP/1.1 {start_line.code} {start_line.reason}"]
        lines += [f"{name}: {value}" for name, value in headers.get_all()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin1"))
        return self.write(chunk or b"")

    def write(self, chunk: bytes) -> Future[None]:
        self.transport.write(chunk)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def finish(self) -> None:
        pass

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        pass

    def detach(self) -> TransportStream:
        return TransportStream(self.transport, self.rest)


def app_on_head(app: tornado.web.Application, protocol: str) -> OnHead:
    def on_head(transport: asyncio.Transport, head: bytes, rest: bytes) -> None:
        first, _, fields = head.decode("latin1").partition("\r\n")
        connection = OneRequestConnection(transport, rest, protocol)
        delegate = app.start_request(None, connection)
        result = delegate.headers_received(
            httputil.parse_request_start_line(first), httputil.HTTPHeaders.parse(fields)
        )
        assert result is None
        delegate.finish()

    return on_head


class Echo(tornado.websocket.WebSocketHandler):
    closes: list[int | None]

    def initialize(self, closes: list[int | None]) -> None:
        self.closes = closes

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        self.closes.append(self.close_code)


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_tornado_websocket_client_and_handler_talk_over_the_transport(tls: bool) -> None:
    async def main() -> None:
        closes: list[int | None] = []
        app = tornado.web.Application([("/ws", Echo, {"closes": closes})])
        protocol = "https" if tls else "http"
        on_head = app_on_head(app, protocol)
        async with serving(on_head, server_tls() if tls else None) as port:
            scheme = "wss" if tls else "ws"
            request = tornado.httpclient.HTTPRequest(
                f"{scheme}://127.0.0.1:{port}/ws", ssl_options=client_tls() if tls else None
            )
            client = await tornado.websocket.websocket_connect(request)
            await client.write_message("hello")
            assert await client.read_message() == "hello"
            big = os.urandom(3 * 1024 * 1024)
            await client.write_message(big, binary=True)
            assert await client.read_message() == big
            client.close(1000)
            await until(lambda: bool(closes))
            assert closes == [1000]

    run(main)


def test_a_frame_sent_with_the_upgrade_request_reaches_the_handler() -> None:
    async def main() -> None:
        closes: list[int | None] = []
        app = tornado.web.Application([("/ws", Echo, {"closes": closes})])
        async with serving(app_on_head(app, "http")) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            mask = b"\x01\x02\x03\x04"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"early"))
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"\r\n" + struct.pack("BB", 0x81, 0x80 | 5) + mask + payload
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await reader.readexactly(7) == b"\x81\x05early"
            writer.close()
            await until(lambda: bool(closes))

    run(main)
