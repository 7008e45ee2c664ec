"""Test app factories: sync, async, raising, raising a ConfigurationError, crashing later."""

import asyncio
import os

import tornado.web
from tornado.ioloop import IOLoop
from tornado_run.runner.lifecycle import ConfigurationError


class Info(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "built_in_pid": self.settings["built_in_pid"]})


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", Info)], built_in_pid=os.getpid())


async def make_app_async() -> tornado.web.Application:
    await asyncio.sleep(0)
    return make_app()


def broken() -> tornado.web.Application:
    raise RuntimeError("database unreachable")


def misconfigured() -> tornado.web.Application:
    raise ConfigurationError("[pools.cpu] size = -1 is not allowed: use 'auto' or N >= 1")


def crashing() -> tornado.web.Application:
    """Serves, then dies 0.2 s after boot: a crash loop."""
    IOLoop.current().call_later(0.2, os._exit, 1)
    return make_app()
