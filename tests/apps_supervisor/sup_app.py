"""Test app for the supervisord tests: every answer names the process that served it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import tornado.web


def _mark(handler: tornado.web.RequestHandler) -> None:
    """Touch the file named by ?mark= so a test knows the request is in flight."""
    mark = handler.get_query_argument("mark", "")
    if mark:
        Path(mark).write_text(str(os.getpid()))


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "ppid": os.getppid()})


class Slow(tornado.web.RequestHandler):
    """Waits without blocking the loop, as a slow upstream call would."""

    async def get(self) -> None:
        _mark(self)
        seconds = float(self.get_query_argument("s", "2"))
        await asyncio.sleep(seconds)
        self.write({"pid": os.getpid(), "slept": seconds})


class Block(tornado.web.RequestHandler):
    """Blocks this process's loop, so a concurrent request must be served by another one."""

    def get(self) -> None:
        _mark(self)
        seconds = float(self.get_query_argument("s", "1"))
        time.sleep(seconds)
        self.write({"pid": os.getpid(), "blocked": seconds})


application = tornado.web.Application([(r"/", Pid), (r"/slow", Slow), (r"/block", Block)])
