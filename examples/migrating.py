"""Moving hand-rolled executor code to tornado-run: `run_on_executor` as a drop-in for
Tornado's, a named pool declared with `pools.configure`, and `check_cancelled()` so work that
timed out stops early instead of running on unobserved.

    tornado-run examples.migrating:application
    curl localhost:8000/legacy/7            # Tornado-style: self.executor, @gen.coroutine, yield
    curl localhost:8000/lookup/42           # @run_on_executor(pool="db"): the pool's limits apply
    curl 'localhost:8000/report?rows=5'     # @unblock(pool="db"): 5 slow rows, answers 200
    curl 'localhost:8000/report?rows=50'    # too slow for the 1 s timeout: 504, and the thread
    curl localhost:8000/stopped             # ...stops at its next check_cancelled()
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.web
from tornado import gen
from tornado_run.decorators import (
    TaskCancelled,
    check_cancelled,
    pools,
    run_on_executor,
    unblock,
)

REPORT_TIMEOUT = 1.0
ROW_SECONDS = 0.1

# Declared at import, created lazily in each worker on first use (never before the fork).
pools.configure("db", kind="thread", size=4, max_pending=32, timeout=REPORT_TIMEOUT)

_stopped_lock = threading.Lock()
_stopped_early = 0


@functools.cache
def legacy_executor() -> ThreadPoolExecutor:
    """The executor seed code kept on the handler; built on first use, so after the fork."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="legacy")


# --8<-- [start:run-on-executor]
class Legacy(tornado.web.RequestHandler):
    """Unchanged Tornado code: only the import of `run_on_executor` moved."""

    def initialize(self) -> None:
        self.executor = legacy_executor()

    @run_on_executor
    def square(self, n: int) -> int:
        time.sleep(0.05)  # a blocking call
        return n * n

    @gen.coroutine
    def get(self, n: str) -> Generator[Any, Any, None]:
        result = yield self.square(int(n))
        self.write({"n": int(n), "square": result})


class Lookup(tornado.web.RequestHandler):
    """The same decorator on a named pool: its size, timeout and backpressure apply."""

    @run_on_executor(pool="db")
    def fetch_row(self, key: int) -> dict[str, object]:
        time.sleep(0.02)  # stands for a blocking database driver
        return {"id": key, "name": f"row {key}"}

    async def get(self, key: str) -> None:
        self.write(await self.fetch_row(int(key)))


# --8<-- [start:check-cancelled]
# --8<-- [end:run-on-executor]


@unblock(pool="db")
def build_report(rows: int) -> dict[str, int]:
    """Process `rows` slow rows; gives up at the next row once the caller's timeout passed."""
    global _stopped_early
    done = 0
    try:
        for _ in range(rows):
            check_cancelled()
            time.sleep(ROW_SECONDS)
            done += 1
    except TaskCancelled:
        with _stopped_lock:
            _stopped_early += 1
        raise
    return {"rows": done}


# --8<-- [end:check-cancelled]


class Report(tornado.web.RequestHandler):
    async def get(self) -> None:
        raw = self.get_query_argument("rows", "5")
        if not raw.isdigit() or int(raw) > 1000:
            raise tornado.web.HTTPError(400, reason=f"rows must be 0..1000, got {raw!r}")
        self.write(await build_report(int(raw)))


class Stopped(tornado.web.RequestHandler):
    def get(self) -> None:
        with _stopped_lock:
            self.write({"stopped_early": _stopped_early})


application = tornado.web.Application(
    [
        (r"/legacy/(\d+)", Legacy),
        (r"/lookup/(\d+)", Lookup),
        (r"/report", Report),
        (r"/stopped", Stopped),
    ]
)
