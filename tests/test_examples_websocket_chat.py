"""examples/websocket_chat.py: messages reach the room, and a reload or a stop ends every socket
with last words and a close code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import pytest
from examples_support import serve
from tornado.websocket import WebSocketClientConnection, websocket_connect

pytestmark = pytest.mark.timeout(60)


async def join(port: int) -> tuple[WebSocketClientConnection, int]:
    conn = await websocket_connect(f"ws://127.0.0.1:{port}/chat")
    welcome = await receive(conn)
    assert welcome["type"] == "welcome"
    return conn, int(welcome["worker"])


async def receive(conn: WebSocketClientConnection) -> Any:
    message = await asyncio.wait_for(conn.read_message(), 10)
    assert isinstance(message, str), f"socket closed: {conn.close_code}"
    return json.loads(message)


async def last_words(conn: WebSocketClientConnection) -> tuple[Any, int | None]:
    """The last message before the close frame, and the close code."""
    last = None
    while (message := await asyncio.wait_for(conn.read_message(), 10)) is not None:
        last = json.loads(message)
    return last, conn.close_code


def test_the_room_hears_messages_and_is_told_to_reconnect_on_a_reload() -> None:
    with serve("examples.websocket_chat:application", ready_path="/health") as app:

        async def main() -> None:
            (alice, worker), (bob, _) = await join(app.port), await join(app.port)
            await alice.write_message("hello")
            assert await receive(alice) == {"type": "message", "text": "hello"}
            assert await receive(bob) == {"type": "message", "text": "hello"}
            os.kill(app.process.pid, signal.SIGHUP)
            for conn in (alice, bob):
                assert await last_words(conn) == ({"type": "reconnect", "after_ms": 200}, 1012)
            carol, new_worker = await join(app.port)
            assert new_worker != worker
            os.kill(app.process.pid, signal.SIGTERM)
            assert await last_words(carol) == ({"type": "bye"}, 1001)

        asyncio.run(main())
        assert app.process.wait(15) == 0
