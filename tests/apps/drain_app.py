"""Test app with a shutdown hook, to show that hooks run after the drain."""

import asyncio
import os
import sys
import time

import tornado.web
from tornado_run.runner import lifecycle


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(self.get_argument("s", "2")))
        self.write({"pid": os.getpid()})


class Block(tornado.web.RequestHandler):
    def get(self) -> None:
        print(f"blocking request started in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(float(self.get_argument("s", "60")))  # blocks the loop: nothing can drain
        self.write({"pid": os.getpid()})


async def _hook(remaining: float) -> None:
    print(f"shutdown hook ran in {os.getpid()} with {remaining:.1f}s left", file=sys.stderr)


lifecycle.add_shutdown_hook(_hook)
application = tornado.web.Application([(r"/slow", Slow), (r"/block", Block)])
