"""A handler that writes to a WebSocket the drain has just closed (an echo of a message that
was in flight) gets `WebSocketClosedError`, as in plain Tornado; under tornado-run, which
chose to close the connection, that is counted in the drain's one summary line instead of a
traceback per message. Real Tornado servers and clients, in this process and under a real
tornado-run with a HUP."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
import tornado.web
import tornado.websocket
from runner_support import Server
from tornado.netutil import bind_sockets
from tornado.websocket import websocket_connect
from tornado_run.runner import lifecycle
from tornado_run.runner.worker import tornado_adapter as adapter
from tornado_run.runner.worker.httpserver import DrainingHTTPServer
from tornado_run.runner.worker.websockets import WebSocketRegistry

pytestmark = pytest.mark.timeout(60)


class SlowEcho(tornado.websocket.WebSocketHandler):
    """Echoes after a pause, so the close frame goes out while an echo is pending."""

    opened: ClassVar[list[SlowEcho]] = []

    def open(self) -> None:
        SlowEcho.opened.append(self)

    async def on_message(self, message: str | bytes) -> None:
        await asyncio.sleep(0.3)
        self.write_message(message)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_log() -> Iterator[Collect]:
    """Records reaching `tornado.application`, whatever an earlier test did to its level."""
    logger = logging.getLogger("tornado.application")
    collect = Collect()
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.DEBUG)
    logger.disabled = False
    logger.addHandler(collect)
    try:
        yield collect
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
        logger.disabled = disabled


async def echo_pending_at_close(registry: WebSocketRegistry | None) -> None:
    """Send a message, close the connection from the server side (the registry's drain, else
    the app's own `close`) while its echo is pending, and wait until the handler has tried
    the write."""
    SlowEcho.opened = []
    app = tornado.web.Application([("/ws", SlowEcho)])
    sockets = bind_sockets(0, "127.0.0.1")
    server = DrainingHTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    try:
        client = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
        await client.write_message("in flight")
        await asyncio.sleep(0.05)  # the server has the message; its echo waits
        if registry is not None:
            await registry.close_all(lifecycle.SERVICE_RESTART)
        else:
            SlowEcho.opened[0].close(lifecycle.SERVICE_RESTART)
        assert await client.read_message() is None
        await asyncio.sleep(0.5)  # the echo's write has failed by now
    finally:
        server.stop()
        await server.close_all_connections()


def test_tornado_logs_a_write_to_a_closed_websocket_as_the_adapter_recognises(
    app_log: Collect,
) -> None:
    """Without tornado-run's drain, Tornado logs the failed echo with a traceback (once since
    Tornado 6.4; before, also as the IOLoop's "Exception in callback"), and the adapter's
    predicate matches those records."""
    asyncio.run(echo_pending_at_close(registry=None))
    errors = [r for r in app_log.records if r.levelno >= logging.ERROR]
    assert 1 <= len(errors) <= 2
    assert all(adapter.is_closed_websocket_write(record) for record in errors)
    other = logging.LogRecord("tornado.application", logging.ERROR, "", 0, "x", (), None)
    assert not adapter.is_closed_websocket_write(other)


def test_a_write_to_a_websocket_the_drain_closed_is_counted_not_logged(
    app_log: Collect,
) -> None:
    registry = WebSocketRegistry()
    registry.install()
    try:
        asyncio.run(echo_pending_at_close(registry))
    finally:
        registry.uninstall()
    assert [r for r in app_log.records if r.levelno >= logging.ERROR] == []
    assert 1 <= registry.closed_writes <= 2  # the records Tornado would have logged


def test_websocket_closed_errors_before_a_drain_are_still_logged(app_log: Collect) -> None:
    registry = WebSocketRegistry()
    registry.install()
    try:
        asyncio.run(echo_pending_at_close(registry=None))  # the app closed it, not the drain
    finally:
        registry.uninstall()
    assert len([r for r in app_log.records if r.levelno >= logging.ERROR]) >= 1
    assert registry.closed_writes == 0


CHATTY_CLIENTS = 40


async def chatter(port: int, stop: asyncio.Event) -> None:
    """A client that keeps sending without waiting for echoes (it reads them as they come),
    so some are in flight when the drain's close frame goes out."""
    conn = await websocket_connect(
        f"ws://127.0.0.1:{port}/ws", on_message_callback=lambda message: None
    )
    number = 0
    while not stop.is_set():
        try:
            await conn.write_message(f"message {number} " + "x" * 200)
        except tornado.websocket.WebSocketClosedError:
            return
        number += 1
        if number % 20 == 0:
            await asyncio.sleep(0.001)


@pytest.mark.timeout(90)
def test_a_hup_under_chatty_echo_clients_logs_no_traceback(
    launch: Callable[..., Server],
) -> None:
    server = launch("ws_app:application", "--workers", "2")
    assert server.port is not None
    port = server.port

    async def main() -> None:
        stop = asyncio.Event()
        clients = [asyncio.ensure_future(chatter(port, stop)) for _ in range(CHATTY_CLIENTS)]
        await asyncio.sleep(0.5)
        server.send_signal(signal.SIGHUP)
        await asyncio.to_thread(server.wait_for_log, r"Reload complete", 30)
        await asyncio.to_thread(server.wait_for_log, r"closed \d+ WebSocket\(s\) with 1012", 30, 2)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients, return_exceptions=True), 15)

    asyncio.run(main())
    assert server.stop() == 0
    log = server.log()
    assert "Traceback" not in log and "WebSocketClosedError" not in log, log
    summaries = re.findall(r"worker (\d+): closed \d+ WebSocket\(s\) with 1012", log)
    assert len(summaries) == len(set(summaries)) == 2, log  # one line per replaced worker
    ignored = re.findall(r"(\d+) error\(s\) from writes to them after the close not logged", log)
    assert sum(map(int, ignored)) > 0, "no echo was in flight at the close: the case not met"
