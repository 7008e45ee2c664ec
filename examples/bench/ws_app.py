"""The WebSocket scenario the benchmark serves: `/ws` sends the worker's pid when it opens and
echoes every message; `/` and `/pid` are the hello-world HTTP routes.

    tornado-run examples.bench.ws_app:application --workers 2
"""

from __future__ import annotations

import os

import tornado.web
import tornado.websocket

from examples.bench.hello import Hello, Pid


class PidSocket(tornado.websocket.WebSocketHandler):
    """Tells the client which worker serves it, then echoes."""

    def open(self) -> None:
        self.write_message(str(os.getpid()))

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


application = tornado.web.Application([(r"/", Hello), (r"/pid", Pid), (r"/ws", PidSocket)])
