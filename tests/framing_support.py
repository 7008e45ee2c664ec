"""Shared parts of the framing tests: the handlers, an in-process server of either kind (the
fast server, or Tornado's as the worker's `DrainingHTTPServer`) on 127.0.0.1, and checks that
a connection is still usable after a trick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest
import tornado
import tornado.web
import uvloop
from fast_http_apps import Chunks, Hello, Sleep
from fast_http_support import Raw, Served, serving
from tornado.netutil import bind_sockets
from tornado_run.runner.worker.httpserver import DrainingHTTPServer

KINDS = pytest.mark.parametrize("kind", ["fast", "tornado"])
GET_10 = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


class Closes(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Connection", "close")
        self.write("bye")


@tornado.web.stream_request_body
class Refuses(tornado.web.RequestHandler):
    """Answers 413 from prepare(), before reading the body."""

    def prepare(self) -> None:
        self.set_status(413)
        self.finish("too big")

    def data_received(self, chunk: bytes) -> None:
        raise AssertionError("the body of a refused request reached the handler")


class Echo(tornado.web.RequestHandler):
    """The request as the application sees it."""

    def get(self, _: str) -> None:
        request = self.request
        self.write(f"{request.uri}|{request.path}|{request.host}|{request.version}")

    def post(self, _: str) -> None:
        self.write(b"got:" + self.request.body)


class Told(tornado.web.RequestHandler):
    """Answers after `s` seconds, noting whether it was told of a disconnect first."""

    told: ClassVar[list[str]] = []

    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s")))
        stream: Any = self.request.connection.stream  # type: ignore[union-attr]
        self.write("answered, stream closed" if stream.closed() else "answered")

    def on_connection_close(self) -> None:
        Told.told.append(self.request.uri or "")


def application(**settings: Any) -> tornado.web.Application:
    return tornado.web.Application(
        [
            ("/", Hello),
            ("/sleep", Sleep),
            ("/chunks", Chunks),
            ("/closes", Closes),
            ("/refuses", Refuses),
            ("/told", Told),
            (r"/echo(.*)", Echo),
        ],
        **settings,
    )


@asynccontextmanager
async def serving_kind(kind: str, **options: Any) -> AsyncIterator[Served]:
    """`application()` on an in-process server of `kind` on 127.0.0.1."""
    if kind != "tornado":
        async with serving(application(), **options) as served:
            yield served
        return
    sockets = bind_sockets(0, "127.0.0.1")
    server = DrainingHTTPServer(application(), **options)
    server.add_sockets(sockets)
    served = Served(server, sockets[0].getsockname()[1])  # type: ignore[arg-type]
    try:
        yield served
    finally:
        for writer in served.writers:
            writer.close()
        server.stop()
        await server.close_all_connections()


def run(main: Callable[[], Awaitable[Any]], loop: str = "asyncio") -> Any:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def answered_again(raw: Raw, request: bytes = GET) -> None:
    """The connection is still usable: one more request gets exactly its answer."""
    raw.send(request)
    status, _, body = await raw.response()
    assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")


async def head_of(raw: Raw) -> bytes:
    return await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
