"""Test app with WebSockets: every socket first sends the serving worker's pid.

/ws echoes; /ws-deflate does the same with permessage-deflate and pings on; /ws-last-words
sends "bye CODE" from `on_server_shutdown` before the server closes it; /pid is HTTP.
"""

import asyncio
import json
import os
from typing import Any

import tornado.web
import tornado.websocket


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "version": "v1"})


class Echo(tornado.websocket.WebSocketHandler):
    def open(self) -> None:
        self.write_message(json.dumps({"pid": os.getpid()}))

    def on_message(self, message: str | bytes) -> None:
        self.write_message(message)


class DeflateEcho(Echo):
    def get_compression_options(self) -> dict[str, Any]:
        return {"compression_level": 6, "mem_level": 5}

    @property
    def ping_interval(self) -> float:
        return 0.5  # the ping timeout keeps Tornado's default for this interval


class LastWords(Echo):
    async def on_server_shutdown(self, code: int) -> None:
        await asyncio.sleep(0.05)  # as an app that flushes something first
        self.write_message(f"bye {code}")


application = tornado.web.Application(
    [
        (r"/pid", Pid),
        (r"/ws", Echo),
        (r"/ws-deflate", DeflateEcho),
        (r"/ws-last-words", LastWords),
    ]
)
