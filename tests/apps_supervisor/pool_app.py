"""Test app whose requests wait on a process-pool task, to check that a supervisord stop lets
in-flight pool work finish."""

from __future__ import annotations

import os
import time
from pathlib import Path

import tornado.web
from tornado_run.decorators import unblock


@unblock(pool="process", timeout=20)
def crunch(seconds: float) -> int:
    """Stands for CPU-bound work in a pool process; returns that process's pid."""
    time.sleep(seconds)
    return os.getpid()


class Crunch(tornado.web.RequestHandler):
    async def get(self) -> None:
        seconds = float(self.get_query_argument("s", "2"))
        mark = self.get_query_argument("mark", "")
        if mark:
            # the pool process is up once a first task has run; only then is a stop "in flight"
            await crunch(0)
            Path(mark).write_text(str(os.getpid()))
        pool_pid = await crunch(seconds)
        self.write({"pid": os.getpid(), "pool_pid": pool_pid})


application = tornado.web.Application([(r"/crunch", Crunch)])
