"""The CPU scenario the benchmark serves: `/slow`, a ~20 ms pure-Python loop, beside `/fast`,
in three variants: blocking, thread pool, process pool.

    tornado-run examples.bench.apps:process_application --workers auto
"""

from __future__ import annotations

import tornado.web
from tornado_run.decorators import unblock

from examples.bench.hello import Pid
from examples.cpu import burn

SLOW_MS = 20


@unblock(pool="process")
def slow_task(ms: int) -> int:
    """The CPU task in this worker's process pool."""
    return burn(ms)


class Fast(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("fast")


class SlowBlocking(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"checksum": burn(SLOW_MS)})


class SlowThread(tornado.web.RequestHandler):
    @unblock
    def get(self) -> dict[str, int]:
        return {"checksum": burn(SLOW_MS)}


class SlowProcess(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"checksum": await slow_task(SLOW_MS)})


def _cpu_app(slow: type[tornado.web.RequestHandler]) -> tornado.web.Application:
    return tornado.web.Application([(r"/fast", Fast), (r"/slow", slow), (r"/pid", Pid)])


blocking_application = _cpu_app(SlowBlocking)
thread_application = _cpu_app(SlowThread)
process_application = _cpu_app(SlowProcess)
