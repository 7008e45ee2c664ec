"""Test app with a large module-level object (a model, a lookup table): 256 MiB of bytes that
every pool call reads."""

from __future__ import annotations

import os

import tornado.web
from tornado_run.decorators import unblock

TABLE = b"\x01" * (256 << 20)


@unblock(pool="process")
def lookup(index: int) -> dict[str, int]:
    """Reads the table in a pool process; returns the value and the process's pid."""
    return {"value": TABLE[index % len(TABLE)], "pid": os.getpid()}


class Lookup(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write(await lookup(int(self.get_query_argument("i", "0"))))


application = tornado.web.Application([(r"/lookup", Lookup)])
