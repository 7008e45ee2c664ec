"""Test app: /pid, /sleep?s=, /loop, /ip, /version; used by the runner tests."""

import asyncio
import os

import tornado.web

VERSION = "v1"


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "version": VERSION})


class Sleep(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "1")))
        self.write({"pid": os.getpid(), "slept": True})


class Loop(tornado.web.RequestHandler):
    def get(self) -> None:
        loop = asyncio.get_running_loop()
        self.write({"loop": f"{type(loop).__module__}.{type(loop).__name__}"})


class Ip(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"remote_ip": self.request.remote_ip, "protocol": self.request.protocol})


class Connection(tornado.web.RequestHandler):
    """The module of the request's HTTPConnection: which HTTP server kind answered."""

    def get(self) -> None:
        self.write({"connection": type(self.request.connection).__module__})


class Env(tornado.web.RequestHandler):
    def get(self) -> None:
        shown = ("TORNADO_RUN_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_")
        self.write({k: v for k, v in os.environ.items() if k.startswith(shown)})


application = tornado.web.Application(
    [
        (r"/", Pid),
        (r"/pid", Pid),
        (r"/sleep", Sleep),
        (r"/loop", Loop),
        (r"/ip", Ip),
        (r"/env", Env),
        (r"/connection", Connection),
    ]
)
