"""The fast server's connection life: idle and body timeouts, flow control both ways,
client disconnects reaching the application, forwarded headers trusted per peer, request
counting, the drain, plain-callable apps and gzip request bodies."""

from __future__ import annotations

import asyncio
import gc
import gzip
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tornado.web
from fast_http_apps import application
from fast_http_support import GET, serving, until
from tornado.httputil import HTTPHeaders, HTTPServerRequest, ResponseStartLine
from tornado_run.runner.worker.httpserver import ProxyTrust

pytestmark = pytest.mark.timeout(20)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        async with serving(application(), idle_connection_timeout=0.3) as served:
            raw = await served.connect()
            raw.send(GET)
            assert (await raw.response())[2] == b"hello"
            started = time.monotonic()
            assert await raw.closed(timeout=5)
            assert time.monotonic() - started >= 0.25
            silent = await served.connect()  # never sends anything
            assert await silent.closed(timeout=5)

    run(main)


def test_slow_body_is_cut_at_the_body_timeout_and_the_handler_hears_of_it() -> None:
    closed = asyncio.Event()

    @tornado.web.stream_request_body
    class Slow(tornado.web.RequestHandler):
        def data_received(self, chunk: bytes) -> None:
            pass

        def on_connection_close(self) -> None:
            closed.set()

        def post(self) -> None:
            self.write("should not happen")

    async def main() -> None:
        app = tornado.web.Application([("/", Slow)])
        async with serving(app, body_timeout=0.3) as served:
            raw = await served.connect()
            raw.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
            assert await raw.read_all(timeout=5) == b""
            await asyncio.wait_for(closed.wait(), 5)

    run(main)


def test_flush_waits_while_the_client_does_not_read() -> None:
    written: list[int] = []
    piece = b"x" * (1 << 20)

    class Big(tornado.web.RequestHandler):
        async def get(self) -> None:
            for number in range(64):
                self.write(piece)
                await self.flush()
                written.append(number)

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Big)])) as served:
            raw = await served.connect()
            raw.send(GET)
            await until(lambda: written)
            await asyncio.sleep(0.5)
            stalled = len(written)
            await asyncio.sleep(0.3)
            assert len(written) == stalled < 64  # paused by the full transport
            _, headers, body = await raw.response(timeout=15)
            assert headers["transfer-encoding"] == "chunked"
            assert len(body) == 64 * len(piece) and len(written) == 64

    run(main)


def test_reading_pauses_while_a_streamed_body_is_not_consumed() -> None:
    release = asyncio.Event()
    received: list[int] = []

    @tornado.web.stream_request_body
    class Gate(tornado.web.RequestHandler):
        async def data_received(self, chunk: bytes) -> None:
            received.append(len(chunk))
            await release.wait()

        def put(self) -> None:
            self.write(str(sum(received)))

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Gate)])) as served:
            total = 8 << 20
            raw = await served.connect()
            raw.send(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
            raw.send(b"y" * total)
            await until(lambda: received)
            await asyncio.sleep(0.3)
            (conn,) = served.server.state.connections
            assert conn.read_paused and len(received) == 1
            release.set()
            assert (await raw.response(timeout=15))[2] == str(total).encode()

    run(main)


def test_client_disconnect_runs_on_connection_close_of_a_waiting_handler() -> None:
    closed = asyncio.Event()

    class Waits(tornado.web.RequestHandler):
        async def get(self) -> None:
            await asyncio.wait_for(closed.wait(), 10)
            self.write("answered")  # to a client that might only have half-closed

        def on_connection_close(self) -> None:
            closed.set()

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Waits)])) as served:
            raw = await served.connect()
            raw.send(GET)
            await until(lambda: served.server.in_flight() == 1)
            raw.writer.close()
            await asyncio.wait_for(closed.wait(), 5)
            await until(lambda: served.server.connection_count == 0)

    run(main)


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [(("127.0.0.1",), b"1.2.3.4 https"), (("10.0.0.0/8",), b"127.0.0.1 http")],
    ids=["trusted-peer", "untrusted-peer"],
)
def test_forwarded_headers_are_used_only_from_trusted_peers(
    allowed: tuple[str, ...], expected: bytes
) -> None:
    async def main() -> None:
        trust = ProxyTrust(allowed)
        async with serving(application(), proxy_trust=trust) as served:
            raw = await served.connect()
            raw.send(
                b"GET /ip HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.2.3.4\r\n"
                b"X-Forwarded-Proto: https\r\n\r\n"
            )
            assert (await raw.response())[2] == expected
            raw.send(b"GET /ip HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing leaks to the next one
            assert (await raw.response())[2] == b"127.0.0.1 http"

    run(main)


def test_without_proxy_trust_forwarded_headers_are_ignored() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(b"GET /ip HTTP/1.1\r\nHost: t\r\nX-Real-Ip: 9.9.9.9\r\n\r\n")
            assert (await raw.response())[2] == b"127.0.0.1 http"

    run(main)


def test_requests_and_in_flight_are_counted() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            for _ in range(5):
                raw.send(GET)
                await raw.response()
            slow = await served.connect()
            slow.send(b"GET /sleep?s=0.5&name=x HTTP/1.1\r\nHost: t\r\n\r\n")
            await until(lambda: served.server.in_flight() == 1)
            assert served.server.requests == 6 and served.server.connection_count == 2
            await slow.response()
            assert served.server.in_flight() == 0

    run(main)


def test_drain_closes_busy_connections_after_their_response_and_half_closes_idle_ones() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            idle = await served.connect()
            idle.send(GET)
            await idle.response()
            busy = await served.connect()
            busy.send(b"GET /sleep?s=0.8&name=last HTTP/1.1\r\nHost: t\r\n\r\n")
            await until(lambda: served.server.in_flight() == 1)
            drain = asyncio.ensure_future(served.server.drain(10))
            _, headers, body = await busy.response()
            assert headers["connection"] == "close" and body == b"last"
            assert await busy.closed()
            assert await idle.closed()  # the FIN of the half-close
            idle.writer.close()
            assert await asyncio.wait_for(drain, 5) == 0
            refused = False
            try:
                await served.connect()
            except OSError:
                refused = True
            assert refused

    run(main)


def test_drain_answers_a_request_read_during_the_grace_with_connection_close() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(GET)
            await raw.response()
            drain = asyncio.ensure_future(served.server.drain(10))
            await asyncio.sleep(0.1)
            raw.send(GET)
            _, headers, body = await raw.response()
            assert headers["connection"] == "close" and body == b"hello"
            assert await asyncio.wait_for(drain, 5) == 0

    run(main)


def test_a_plain_callable_app_is_served() -> None:
    def app(request: HTTPServerRequest) -> None:
        assert request.connection is not None
        body = b"called " + request.uri.encode()  # type: ignore[union-attr]
        request.connection.write_headers(
            ResponseStartLine("HTTP/1.1", 200, "OK"),
            HTTPHeaders({"Content-Length": str(len(body))}),
            body,
        )
        request.connection.finish()

    async def main() -> None:
        async with serving(app) as served:  # type: ignore[arg-type]
            raw = await served.connect()
            raw.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await raw.response())[2] == b"called /x"
            raw.send(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await raw.response())[2] == b"called /y"

    run(main)


def test_gzip_request_bodies_are_decoded_with_decompress_request() -> None:
    async def main() -> None:
        async with serving(application(), decompress_request=True) as served:
            packed = gzip.compress(b"unzipped")
            raw = await served.connect()
            raw.send(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(packed), packed)
            )
            assert (await raw.response())[2] == b"got:unzipped"

    run(main)


def test_served_requests_leave_no_reference_cycles_for_the_gc() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            raw = await served.connect()
            raw.send(GET)
            await raw.response()
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to look at it
            try:
                for _ in range(50):
                    raw.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
                    await raw.response()
                gc.collect()
                # Only the request path's own objects: other tests' threads in this process
                # may leave garbage of their own meanwhile.
                ours = [type(o).__qualname__ for o in gc.garbage if _request_path_object(o)]
                assert ours == []
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    run(main)


def _request_path_object(obj: object) -> bool:
    module = type(obj).__module__
    return module.startswith(("tornado_run.runner.worker.fast", "tornado.httputil", "tornado.web"))


def test_body_pieces_are_at_most_chunk_size_and_tiny_chunks_are_joined() -> None:
    sizes: list[list[int]] = []

    @tornado.web.stream_request_body
    class Sizes(tornado.web.RequestHandler):
        def prepare(self) -> None:
            sizes.append([])

        def data_received(self, chunk: bytes) -> None:
            sizes[-1].append(len(chunk))

        def post(self) -> None:
            self.write("ok")

    async def main() -> None:
        app = tornado.web.Application([("/", Sizes)])
        async with serving(app, chunk_size=16) as served:
            raw = await served.connect()
            raw.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
            await raw.response()
            tiny = b"1\r\na\r\n" * 10 + b"0\r\n\r\n"
            raw.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + tiny)
            await raw.response()
        assert sizes == [[16, 16, 16, 2], [10]]

    run(main)


def test_drain_half_closes_a_connection_still_queued_when_it_starts() -> None:
    async def main() -> None:
        async with serving(application()) as served:
            queued = socket.create_connection(("127.0.0.1", served.port))  # loop not yet told
            queued.settimeout(5)
            try:
                started = time.monotonic()
                drain = asyncio.ensure_future(served.server.drain(10))
                assert await asyncio.to_thread(queued.recv, 1) == b""  # FIN of the half-close
            finally:
                queued.close()
            assert await drain == 0
            assert time.monotonic() - started < 5  # not left open until the 10 s deadline

    run(main)
