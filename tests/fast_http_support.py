"""An in-process fast server (or, for comparison, Tornado's HTTPServer) on 127.0.0.1
(ephemeral port) and a raw-socket client for the tests/test_fast_http_*.py modules: every
test runs one `asyncio.run(main())`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerConnectionDelegate
from tornado.netutil import bind_sockets
from tornado_run.runner.worker.fast.server import FastHTTPServer

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@asynccontextmanager
async def serving(
    app: HTTPServerConnectionDelegate, kind: str = "fast", **options: Any
) -> AsyncIterator[Served]:
    """Serve `app` with the fast server, or with `kind="tornado"` Tornado's HTTPServer."""
    sockets = bind_sockets(0, "127.0.0.1")
    server: Any = FastHTTPServer(app, **options) if kind == "fast" else HTTPServer(app, **options)
    server.add_sockets(sockets)
    served = Served(server, sockets[0].getsockname()[1])
    try:
        yield served
    finally:
        for writer in served.writers:
            writer.close()
        server.stop()
        await server.close_all_connections()


class Served:
    def __init__(self, server: FastHTTPServer, port: int) -> None:
        self.server = server
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return Raw(reader, writer)

    async def exchange(self, data: bytes, timeout: float = 5) -> bytes:
        """Send `data` on a fresh connection and read until the server closes it."""
        raw = await self.connect()
        raw.send(data)
        return await raw.read_all(timeout)


class Raw:
    """One client connection speaking raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_all(self, timeout: float = 5) -> bytes:
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def response(self, timeout: float = 5) -> tuple[bytes, dict[str, str], bytes]:
        """One response: status line, headers (lower-case names), body (by Content-Length
        or chunked, decoded)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status, *lines = head.decode("latin1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                body += (await self.reader.readexactly(size + 2))[:-2]
                if size == 0:
                    break
        return status.encode("latin1"), headers, body

    async def closed(self, timeout: float = 5) -> bool:
        """True once the server closes the connection (end of stream)."""
        return await asyncio.wait_for(self.reader.read(), timeout) == b""


async def until(done: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not reached in {timeout} s")
