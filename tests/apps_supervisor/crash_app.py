"""A crash-looping app: it loads, then every worker dies a moment after it starts serving."""

from __future__ import annotations

import os

import tornado.ioloop
import tornado.web


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid()})


def make_app() -> tornado.web.Application:
    """Factory called in each worker: schedules that worker's crash."""
    tornado.ioloop.IOLoop.current().call_later(0.3, os._exit, 1)
    return tornado.web.Application([(r"/", Pid)])
