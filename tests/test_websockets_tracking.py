"""The worker's WebSocket registry against real Tornado servers and clients in this process:
what it counts, and how `close_all` closes (last words, close code, unanswered closes)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
import tornado.web
import tornado.websocket
from tornado.netutil import bind_sockets
from tornado.websocket import WebSocketClientConnection, websocket_connect
from tornado_run.runner import lifecycle
from tornado_run.runner.control.channel import STOP_REPLACED, STOP_SERVER, STOP_UNKNOWN
from tornado_run.runner.worker import websockets
from tornado_run.runner.worker.fast.server import FastHTTPServer
from tornado_run.runner.worker.httpserver import DrainingHTTPServer
from tornado_run.runner.worker.websockets import WebSocketRegistry, close_code_for

pytestmark = pytest.mark.timeout(20)


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class Polite(Echo):
    """Says goodbye and records the order of events."""

    events: ClassVar[list[str]] = []

    async def on_server_shutdown(self, code: int) -> None:
        await asyncio.sleep(0.01)
        self.write_message(f"bye {code}")
        Polite.events.append("last words")

    def on_close(self) -> None:
        Polite.events.append(f"closed {self.close_code}")


class Stubborn(Echo):
    """Last words that never finish, or that fail."""

    async def on_server_shutdown(self, code: int) -> None:
        if self.get_query_argument("fail", ""):
            raise RuntimeError("no last words")
        await asyncio.Event().wait()


class Plain(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("plain")


@pytest.fixture
def registry() -> Iterator[WebSocketRegistry]:
    tracker = WebSocketRegistry()
    tracker.install()
    try:
        yield tracker
    finally:
        tracker.uninstall()


@asynccontextmanager
async def serving(close_every_response: bool = False, kind: str = "tornado") -> AsyncIterator[int]:
    app = tornado.web.Application(
        [("/ws", Echo), ("/polite", Polite), ("/plain", Plain), ("/stubborn", Stubborn)]
    )
    sockets = bind_sockets(0, "127.0.0.1")
    server: DrainingHTTPServer | FastHTTPServer
    if kind == "fast":
        server = FastHTTPServer(app)
        server.state.draining = close_every_response  # what a drain sets
    else:
        server = DrainingHTTPServer(app)
        server.conn_params.no_keep_alive = close_every_response  # what a drain sets
    server.add_sockets(sockets)
    try:
        yield int(sockets[0].getsockname()[1])
    finally:
        server.stop()
        await server.close_all_connections()


async def until(done: Callable[[], bool]) -> None:
    for _ in range(300):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 3 s")


async def connect(port: int, path: str = "/ws") -> WebSocketClientConnection:
    return await websocket_connect(f"ws://127.0.0.1:{port}{path}")


def test_an_open_websocket_is_counted_until_its_client_closes(
    registry: WebSocketRegistry,
) -> None:
    async def main() -> None:
        async with serving() as port:
            first, second = await connect(port), await connect(port)
            await until(lambda: registry.count == 2)
            await first.write_message("hi")
            assert await first.read_message() == "hi"  # still counted while it talks
            assert registry.count == 2
            first.close()
            await until(lambda: registry.count == 1 and registry.tracked == 1)
            second.close()
            await until(lambda: registry.tracked == 0)

    asyncio.run(main())


def test_a_plain_get_on_a_websocket_route_is_not_counted(registry: WebSocketRegistry) -> None:
    async def main() -> None:
        async with serving() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n")
            status = await reader.readline()
            assert b" 400 " in status
            writer.close()
            assert registry.count == 0 and registry.tracked == 0

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["tornado", "fast"])
def test_an_upgrade_reaching_a_draining_server_still_opens(
    registry: WebSocketRegistry, kind: str
) -> None:
    async def main() -> None:
        async with serving(close_every_response=True, kind=kind) as port:
            client = await connect(port)  # Tornado's client insists on Connection: Upgrade
            assert client.headers["Connection"].lower() == "upgrade"
            await until(lambda: registry.count == 1)
            await registry.close_all(lifecycle.SERVICE_RESTART)
            assert await client.read_message() is None
            assert client.close_code == lifecycle.SERVICE_RESTART
            assert await http_get_closes(port)  # other answers still say Connection: close

    asyncio.run(main())


async def http_get_closes(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    return b"Connection: close" in head


def test_close_all_sends_the_code_and_waits_for_the_clients_answer(
    registry: WebSocketRegistry,
) -> None:
    async def main() -> None:
        async with serving() as port:
            clients = [await connect(port) for _ in range(3)]
            await until(lambda: registry.count == 3)
            result = await registry.close_all(lifecycle.SERVICE_RESTART)
            assert (result.closed, result.cut) == (3, 0)
            assert registry.tracked == 0  # every handshake completed before it returned
            for client in clients:
                assert await client.read_message() is None
                assert client.close_code == lifecycle.SERVICE_RESTART
                assert client.close_reason == "server restart"

    asyncio.run(main())


def test_last_words_are_sent_before_the_close_frame(registry: WebSocketRegistry) -> None:
    Polite.events = []

    async def main() -> None:
        async with serving() as port:
            polite, plain = await connect(port, "/polite"), await connect(port)
            await until(lambda: registry.count == 2)
            await registry.close_all(lifecycle.GOING_AWAY)
            assert await polite.read_message() == "bye 1001"
            assert await polite.read_message() is None
            assert polite.close_code == lifecycle.GOING_AWAY
            assert await plain.read_message() is None
            assert plain.close_code == lifecycle.GOING_AWAY
            assert Polite.events == ["last words", "closed 1001"]

    asyncio.run(main())


def test_last_words_that_hang_or_fail_do_not_stop_the_close(
    registry: WebSocketRegistry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(websockets, "LAST_WORDS_SECONDS", 0.2)

    async def main() -> None:
        async with serving() as port:
            hanging = await connect(port, "/stubborn")
            failing = await connect(port, "/stubborn?fail=1")
            await until(lambda: registry.count == 2)
            result = await registry.close_all(lifecycle.GOING_AWAY)
            assert (result.closed, result.cut) == (2, 0)
            for client in (hanging, failing):
                assert await client.read_message() is None
                assert client.close_code == lifecycle.GOING_AWAY

    asyncio.run(main())
    assert "1 on_server_shutdown call(s) still running after 0.2s" in caplog.text
    assert "no last words" in caplog.text


def test_a_client_that_never_answers_the_close_is_cut_at_the_bound(
    registry: WebSocketRegistry,
) -> None:
    async def main() -> None:
        async with serving() as port:
            key = base64.b64encode(os.urandom(16)).decode()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await until(lambda: registry.count == 1)
            result = await registry.close_all(lifecycle.GOING_AWAY, handshake_timeout=0.2)
            assert (result.closed, result.cut) == (1, 1)
            await until(lambda: registry.tracked == 0)
            sock.settimeout(5)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            sock.close()
            assert b" 101 " in received.split(b"\r\n", 1)[0]
            assert received.endswith(b"\x88\x11\x03\xe9server shutdown")  # close frame, 1001

    asyncio.run(main())


def test_a_second_registry_in_one_process_is_refused(registry: WebSocketRegistry) -> None:
    with pytest.raises(RuntimeError, match="already installed"):
        WebSocketRegistry().install()


def test_uninstall_gives_tornado_its_own_get_back() -> None:
    original = tornado.websocket.WebSocketHandler.get
    tracker = WebSocketRegistry()
    tracker.install()
    assert tornado.websocket.WebSocketHandler.get is not original
    tracker.uninstall()
    assert tornado.websocket.WebSocketHandler.get is original


def test_the_close_code_follows_the_masters_stop_reason() -> None:
    assert close_code_for(STOP_REPLACED) == 1012 == lifecycle.SERVICE_RESTART
    assert close_code_for(STOP_SERVER) == 1001 == lifecycle.GOING_AWAY
    assert close_code_for(STOP_UNKNOWN) == 1001  # a TERM from outside: the server stops
