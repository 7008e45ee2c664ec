"""A chat room over WebSockets that says goodbye before a worker stops.

    .venv/bin/tornado-run examples.websocket_chat:application --workers 2
    # in a browser console: ws = new WebSocket("ws://localhost:8000/chat"); ...

Each message a client sends goes to every client connected to the same worker. (To reach the
clients of every worker, publish through a broker such as Redis.) When the worker drains,
tornado-run first calls `on_server_shutdown` with the close code it is about to send. On a
reload (1012) the room tells its clients to come back shortly, and on a stop (1001) it says
goodbye. Then the close frame goes out.
"""

from __future__ import annotations

import json
import os
from typing import ClassVar

import tornado.web
import tornado.websocket
from tornado_run.runner.lifecycle import SERVICE_RESTART


class Room(tornado.websocket.WebSocketHandler):
    """Everyone connected to this worker."""

    members: ClassVar[set[Room]] = set()

    def open(self) -> None:
        Room.members.add(self)
        self.write_message({"type": "welcome", "worker": os.getpid()})

    def on_message(self, message: str | bytes) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        for member in list(Room.members):
            member.write_message({"type": "message", "text": text[:1000]})

    def on_close(self) -> None:
        Room.members.discard(self)

    def on_server_shutdown(self, code: int) -> None:
        """Last words: tornado-run closes the socket with `code` right after."""
        if code == SERVICE_RESTART:
            self.write_message({"type": "reconnect", "after_ms": 200})
        else:
            self.write_message({"type": "bye"})


class Health(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(json.dumps({"pid": os.getpid(), "members": len(Room.members)}))


application = tornado.web.Application([(r"/chat", Room), (r"/health", Health)])
