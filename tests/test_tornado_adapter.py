"""One test per private Tornado attribute that the runner relies on, against real servers,
connections and handlers: a Tornado release that renames one fails here, by name."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
import tornado
import tornado.httputil
import tornado.web
from tornado.http1connection import HTTP1Connection, HTTP1ServerConnection
from tornado.netutil import bind_sockets
from tornado_run.runner.worker import tornado_adapter as adapter
from tornado_run.runner.worker.httpserver import DrainingHTTPServer

pytestmark = pytest.mark.timeout(20)

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@asynccontextmanager
async def serving(app: tornado.web.Application) -> AsyncIterator[tuple[DrainingHTTPServer, int]]:
    sockets = bind_sockets(0, "127.0.0.1")
    server = DrainingHTTPServer(app)
    server.add_sockets(sockets)
    try:
        yield server, sockets[0].getsockname()[1]
    finally:
        server.stop()
        await server.close_all_connections()


async def until(done: Callable[[], bool]) -> None:
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 2 s")


def only_connection(server: DrainingHTTPServer) -> HTTP1ServerConnection:
    (conn,) = adapter.open_connections(server)
    return conn


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


def test_open_connections_is_the_live_set_of_client_connections() -> None:
    async def main() -> None:
        async with serving(tornado.web.Application([("/", Hello)])) as (server, port):
            assert isinstance(server._connections, set)
            assert adapter.open_connections(server) == set()
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await until(lambda: len(adapter.open_connections(server)) == 1)
            assert isinstance(only_connection(server), HTTP1ServerConnection)
            writer.close()
            await until(lambda: not adapter.open_connections(server))

    asyncio.run(main())


def test_listening_sockets_are_the_sockets_added_to_the_server() -> None:
    async def main() -> None:
        sockets = bind_sockets(0, "127.0.0.1")
        server = DrainingHTTPServer(tornado.web.Application())
        assert isinstance(server._sockets, dict)
        server.add_sockets(sockets)
        assert adapter.listening_sockets(server) == sockets
        server.stop()
        assert all(sock.fileno() == -1 for sock in adapter.listening_sockets(server))

    asyncio.run(main())


def test_accept_handler_serves_a_socket_accepted_by_hand() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        server = DrainingHTTPServer(tornado.web.Application([("/", Hello)]))
        assert callable(server._handle_connection)
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        conn, address = await loop.sock_accept(listener)
        adapter.accept_handler(server)(conn, address)
        writer.write(GET)
        reply = await asyncio.wait_for(reader.read(4096), 5)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello")
        writer.close()
        listener.close()
        await server.close_all_connections()

    asyncio.run(main())


class Held(tornado.web.RequestHandler):
    """Answers once the test releases it, so the test can look at the request in flight."""

    release: asyncio.Event

    async def get(self) -> None:
        await self.release.wait()
        self.write("done")


def test_request_state_and_close_after_response_on_a_request_in_flight() -> None:
    async def main() -> None:
        Held.release = asyncio.Event()
        async with serving(tornado.web.Application([("/", Held)])) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await until(lambda: len(adapter.open_connections(server)) == 1)
            server_conn = only_connection(server)
            writer.write(GET)
            await until(lambda: server_conn in server._current)
            conn: HTTP1Connection = server._current[server_conn]
            await until(lambda: adapter.request_started(conn))
            assert conn._request_start_line is not None and not conn._finish_future.done()
            assert adapter.request_started(conn) and not adapter.response_finished(conn)
            assert conn._disconnect_on_finish is False
            adapter.close_after_response(conn)
            Held.release.set()
            reply = await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closed
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"done")
            assert adapter.response_finished(conn)
            writer.close()

    asyncio.run(main())


def test_keep_alive_connection_between_requests_has_no_request_started() -> None:
    async def main() -> None:
        async with serving(tornado.web.Application([("/", Hello)])) as (server, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET)
            assert (await asyncio.wait_for(reader.read(4096), 5)).endswith(b"hello")
            conn = server._current[only_connection(server)]
            await until(lambda: not adapter.request_started(conn))
            writer.close()

    asyncio.run(main())


def test_buffered_bytes_counts_a_partial_request() -> None:
    async def main() -> None:
        async with serving(tornado.web.Application([("/", Hello)])) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            await until(lambda: len(adapter.open_connections(server)) == 1)
            stream = only_connection(server).stream
            assert isinstance(stream._read_buffer_size, int)
            assert adapter.buffered_bytes(stream) == 0
            partial = b"GET / HTTP/1.1\r\nHost: t\r\n"  # the header block is not complete
            writer.write(partial)
            await until(lambda: adapter.buffered_bytes(stream) > 0)
            writer.close()

    asyncio.run(main())


class Probe(tornado.web.RequestHandler):
    """Records what the adapter says before and after flush() and finish()."""

    seen: ClassVar[list[bool]] = []

    async def get(self) -> None:
        Probe.seen = [self._headers_written, self._finished]
        Probe.seen.append(adapter.headers_written(self))
        self.write("x")
        await self.flush()
        Probe.seen.append(adapter.headers_written(self))
        Probe.seen.append(adapter.handler_finished(self))
        self.finish()
        Probe.seen.append(adapter.handler_finished(self))


def test_headers_written_and_handler_finished_follow_flush_and_finish() -> None:
    async def main() -> None:
        async with serving(tornado.web.Application([("/", Probe)])) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET)
            assert (await asyncio.wait_for(reader.read(4096), 5)).startswith(b"HTTP/1.1 200")
            writer.close()
        assert Probe.seen == [False, False, False, True, False, True]

    asyncio.run(main())


def test_close_after_response_refuses_a_connection_without_the_attribute() -> None:
    async def main() -> None:
        Held.release = asyncio.Event()
        async with serving(tornado.web.Application([("/", Held)])) as (server, port):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET)
            await until(lambda: len(server._current) == 1)
            (conn,) = server._current.values()
            del conn._disconnect_on_finish  # as if a Tornado release had renamed it
            with pytest.raises(AttributeError, match="_disconnect_on_finish"):
                adapter.close_after_response(conn)
            conn._disconnect_on_finish = False
            Held.release.set()
            writer.close()

    asyncio.run(main())


# The fast server's use of Tornado's private request context and delegates.


def test_request_context_gives_remote_ip_and_protocol_for_tcp_and_unix_peers() -> None:
    tcp = adapter.request_context(socket.AF_INET, ("10.1.2.3", 5000), "https")
    assert (tcp.remote_ip, tcp.protocol, str(tcp)) == ("10.1.2.3", "https", "10.1.2.3")
    unix = adapter.request_context(socket.AF_UNIX, "", "http")
    assert (unix.remote_ip, unix.protocol) == ("0.0.0.0", "http")


def test_apply_forwarded_rewrites_the_context_and_unapply_restores_it() -> None:
    from tornado.httputil import HTTPHeaders

    context = adapter.request_context(socket.AF_INET, ("127.0.0.1", 1), "http")
    headers = HTTPHeaders({"X-Forwarded-For": "8.8.8.8", "X-Forwarded-Proto": "https"})
    adapter.apply_forwarded(context, headers)
    assert (context.remote_ip, context.protocol) == ("8.8.8.8", "https")
    adapter.unapply_forwarded(context)
    assert (context.remote_ip, context.protocol) == ("127.0.0.1", "http")


def test_callable_delegate_builds_the_request_and_calls_back_with_its_body() -> None:
    from tornado.httputil import HTTPHeaders, RequestStartLine

    seen = []
    conn = HTTP1Connection.__new__(HTTP1Connection)  # only passed through to the request
    delegate = adapter.callable_delegate(seen.append, conn)
    delegate.headers_received(
        RequestStartLine("POST", "/x", "HTTP/1.1"), HTTPHeaders({"Host": "h"})
    )
    delegate.data_received(b"ab")
    delegate.data_received(b"c")
    delegate.finish()
    (request,) = seen
    assert (request.method, request.uri, request.body) == ("POST", "/x", b"abc")


def test_gzip_delegate_decodes_gzip_bodies_for_the_wrapped_delegate() -> None:
    import gzip

    from tornado.httputil import HTTPHeaders, HTTPMessageDelegate, RequestStartLine

    class Collect(HTTPMessageDelegate):
        body = b""
        headers: HTTPHeaders | None = None

        def headers_received(self, start_line: object, headers: HTTPHeaders) -> None:
            self.headers = headers

        def data_received(self, chunk: bytes) -> None:
            self.body += chunk

    inner = Collect()
    delegate = adapter.gzip_delegate(inner, 65536, 1 << 20)
    delegate.headers_received(
        RequestStartLine("POST", "/", "HTTP/1.1"), HTTPHeaders({"Content-Encoding": "gzip"})
    )
    asyncio.run(delegate.data_received(gzip.compress(b"plain text")))
    delegate.finish()
    assert inner.body == b"plain text"
    assert inner.headers is not None and "Content-Encoding" not in inner.headers


def test_checked_headers_fills_httpheaders_like_add_does() -> None:
    pairs = [("content-TYPE", "text/plain"), ("X-Multi", "a"), ("x-multi", "b"), ("Host", "h")]
    built = adapter.checked_headers(pairs)
    assert isinstance(built._as_list, dict)
    if tornado.version_info >= (6, 5):  # older releases have no cache and take the public path
        assert isinstance(built._combined_cache, dict)
    reference = tornado.httputil.HTTPHeaders()
    for name, value in pairs:
        reference.add(name, value)
    assert list(built.get_all()) == list(reference.get_all())
    assert built["Content-Type"] == "text/plain" and built["X-Multi"] == "a,b"
    assert built.get_list("x-multi") == ["a", "b"]
