"""Test app for the differential HTTP suites: every request the application sees is recorded
(method, target, version, body length and hash), and `/_served?since=N` returns the records
from the N-th on, so a test can tell exactly which requests a server made of its bytes.

Any other target is echoed as JSON; targets ending in `/stream` answer in flushed pieces
(no length), `/close` sets its own `Connection: close`, `/sleep` answers after 0.3 s,
`/early` (a streaming handler) refuses with 403 before reading the body, and `/ws` is a
WebSocket echo."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import tornado.web
import tornado.websocket

SERVED: list[dict[str, Any]] = []


def _peer_port(request: Any) -> int:
    """The client's port: which connection the request came on."""
    address = getattr(getattr(request.connection, "context", None), "address", None)
    return int(address[1]) if isinstance(address, tuple) else 0


def _record(request: Any) -> dict[str, Any]:
    body = request.body or b""
    entry = {
        "method": request.method,
        "target": request.uri,
        "version": request.version,
        "length": len(body),
        "sha": hashlib.sha256(body).hexdigest()[:16],
        "port": _peer_port(request),
    }
    SERVED.append(entry)
    return entry


class Echo(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self) -> None:
        self.entry = _record(self.request)

    async def get(self) -> None:
        target = self.request.path
        if target.endswith("/stream"):
            for piece in (b"one,", b"two,", b"three"):
                self.write(piece)
                await self.flush()
            return
        if target.endswith("/close"):
            self.set_header("Connection", "close")
        if target.endswith("/sleep"):
            await asyncio.sleep(0.3)
        self.write(self.entry)

    head = post = put = delete = patch = options = get


@tornado.web.stream_request_body
class Early(tornado.web.RequestHandler):
    """Refuses in prepare(), before any of the body is read."""

    def initialize(self) -> None:
        _record(self.request)

    def prepare(self) -> None:
        raise tornado.web.HTTPError(403)

    def data_received(self, chunk: bytes) -> None:
        pass


class Socket(tornado.websocket.WebSocketHandler):
    def initialize(self) -> None:
        _record(self.request)

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message, binary=isinstance(message, bytes))


class Served(tornado.web.RequestHandler):
    def get(self) -> None:
        since = int(self.get_argument("since", "0"))
        self.write({"pid": os.getpid(), "count": len(SERVED), "entries": SERVED[since:]})


application = tornado.web.Application(
    [
        (r"/_served", Served),
        (r"/ws", Socket),
        (r"/[^/]*/early", Early),
        (r".*", Echo),
    ]
)
