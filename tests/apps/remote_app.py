"""Test app whose blocking work runs on the dask pool "remote", declared only in the config
file of the tornado-run that serves it. The dask scheduler and workers have this folder on
their PYTHONPATH and no pool declared: they import this module to run its functions.

/work?ms=      sleeps `ms` on a dask worker, answers which worker ran it
/hold?dir=&timeout=short|long
               a task that marks DIR/started (with its worker's pid and address) and runs
               until DIR/release exists; answers 504 past its timeout
/pid           this web worker's pid, no pool involved
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import tornado.web
from tornado_run.decorators import unblock

SHORT_TIMEOUT = 2.0
LONG_TIMEOUT = 20.0


def _worker_address() -> str:
    """The dask worker running this call (a module-level helper the shipped function uses)."""
    from distributed import get_worker

    return str(get_worker().address)


@unblock(pool="remote", timeout=LONG_TIMEOUT)
def work(ms: int) -> dict[str, Any]:
    time.sleep(ms / 1000)
    return {"slept_ms": ms, "worker": _worker_address()}


def hold_until_released(folder: str) -> dict[str, Any]:
    """Mark `folder`/started, then run until `folder`/release exists (at most 60 s)."""
    here = Path(folder)
    (here / "started.tmp").write_text(f"{os.getpid()} {_worker_address()}")
    (here / "started.tmp").rename(here / "started")
    deadline = time.monotonic() + 60
    while not (here / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"released": True, "worker": _worker_address()}


hold_short = unblock(pool="remote", timeout=SHORT_TIMEOUT)(hold_until_released)
hold_long = unblock(pool="remote", timeout=LONG_TIMEOUT)(hold_until_released)


class Work(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write(await work(int(self.get_argument("ms", "20"))))


class Hold(tornado.web.RequestHandler):
    async def get(self) -> None:
        hold = hold_short if self.get_argument("timeout") == "short" else hold_long
        self.write(await hold(self.get_argument("dir")))


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid()})


application = tornado.web.Application([(r"/work", Work), (r"/hold", Hold), (r"/pid", Pid)])
