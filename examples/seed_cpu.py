"""The seed app, three ways: `/` answers at once, `/sleep/N` burns about N ms of CPU.

The seed's `/sleep/N` ran a pure-Python loop right in the handler, so one request stalled
every other one in that process. This module serves the same two routes three times over:

    tornado-run examples.seed_cpu:blocking_application   # the seed as it was: `/` waits
    tornado-run examples.seed_cpu:thread_application     # @unblock: a thread, still the GIL
    tornado-run examples.seed_cpu:application            # @unblock(pool="process"): `/` free

Try `curl localhost:8000/sleep/2000 &` then `curl localhost:8000/` against each one.
"""

from __future__ import annotations

import tornado.web
from tornado_run.decorators import unblock

LOOPS_PER_MS = 22_000


def spin(ms: int) -> int:
    """Run a pure-Python loop for about `ms` milliseconds and return a checksum."""
    total = 0
    for i in range(ms * LOOPS_PER_MS):
        total ^= i
    return total


@unblock(pool="process")
def spin_in_process(ms: int) -> int:
    """`spin` in the worker's process pool (module-level, so pool processes can import it)."""
    return spin(ms)


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world\n")


class BlockingSleep(tornado.web.RequestHandler):
    def get(self, ms: str) -> None:
        self.write({"slept_ms": int(ms), "checksum": spin(int(ms))})


class ThreadSleep(tornado.web.RequestHandler):
    @unblock
    def get(self, ms: str) -> dict[str, int]:
        return {"slept_ms": int(ms), "checksum": spin(int(ms))}


class ProcessSleep(tornado.web.RequestHandler):
    async def get(self, ms: str) -> None:
        self.write({"slept_ms": int(ms), "checksum": await spin_in_process(int(ms))})


def _app(sleep_handler: type[tornado.web.RequestHandler]) -> tornado.web.Application:
    return tornado.web.Application([(r"/", Index), (r"/sleep/(\d+)", sleep_handler)])


blocking_application = _app(BlockingSleep)
thread_application = _app(ThreadSleep)
process_application = _app(ProcessSleep)
application = process_application
