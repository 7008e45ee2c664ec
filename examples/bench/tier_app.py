"""CPU tasks that measure themselves: each one spins until its own process CPU time
(`time.process_time()`) has grown by `ms` milliseconds, so every completed task is exactly
that much useful CPU, whatever the clock speed of the moment. `/offloaded?ms=N` runs it through
`@unblock(pool="process")` (the CPU tier under tornado-run), `/blocking?ms=N` on the loop.

    tornado-run examples.bench.tier_app:application --workers auto
"""

from __future__ import annotations

import time

import tornado.web
from tornado_run.decorators import unblock


def spend(ms: float) -> float:
    """Burn `ms` milliseconds of this process's CPU; return the CPU time measured."""
    started = time.process_time()
    goal = started + ms / 1000
    now = started
    while now < goal:
        for _ in range(200):  # a few microseconds of work between clock reads
            pass
        now = time.process_time()
    return now - started


@unblock(pool="process")
def task(ms: float) -> float:
    return spend(ms)


class Offloaded(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"cpu": await task(float(self.get_query_argument("ms", "2")))})


class Blocking(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"cpu": spend(float(self.get_query_argument("ms", "2")))})


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ready")


application = tornado.web.Application(
    [(r"/offloaded", Offloaded), (r"/blocking", Blocking), (r"/ready", Ready)]
)
