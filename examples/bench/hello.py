"""Hello world for the throughput rows: plain Tornado, nothing else, so every peer (tornado-run,
raw `fork_processes`, `gunicorn -k tornado`) serves exactly the same app.

    tornado-run examples.bench.hello:application --workers 2
"""

from __future__ import annotations

import os

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


class Pid(tornado.web.RequestHandler):
    """Answers the worker's pid: the benchmark uses it to tell workers apart."""

    def get(self) -> None:
        self.write(str(os.getpid()))


class Json(tornado.web.RequestHandler):
    """A small JSON document, the usual API answer."""

    def get(self) -> None:
        self.write({"message": "Hello, world", "items": [1, 2, 3], "ok": True})


class Echo(tornado.web.RequestHandler):
    """Reads a request body (the 4 KiB POST rows) and answers its length."""

    def post(self) -> None:
        self.write(str(len(self.request.body)))


application = tornado.web.Application(
    [(r"/", Hello), (r"/pid", Pid), (r"/json", Json), (r"/echo", Echo)]
)
