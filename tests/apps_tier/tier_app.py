"""Test app for the CPU tier: CPU and sleeping calls in process pools, each answering which
pool process ran it and when, so tests can see where and how calls ran."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import tornado.web
from tornado_run.decorators import Overloaded, cancel_on_disconnect, pools, unblock

pools.configure("narrow", kind="process", size=1, max_pending=1)
pools.configure("quick", kind="process", size=2, timeout=0.5)
pools.configure("polite", kind="process", size=1, cancel_running=True)


def _burn(ms: float) -> dict[str, Any]:
    started = time.time()
    cpu = time.process_time()
    end = cpu + ms / 1000
    while time.process_time() < end:
        pass
    return {
        "pid": os.getpid(),
        "start": started,
        "end": time.time(),
        "cpu": time.process_time() - cpu,
    }


@unblock(pool="process")
def burn(ms: float) -> dict[str, Any]:
    """Burns `ms` of CPU in a pool process."""
    return _burn(ms)


def _sleep(seconds: float, mark: str) -> dict[str, Any]:
    if mark:
        Path(mark).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"pid": os.getpid()}


@unblock(pool="process")
def nap(seconds: float, mark: str = "") -> dict[str, Any]:
    """Sleeps in a pool process, first writing its pid to `mark` (if given)."""
    return _sleep(seconds, mark)


@unblock(pool="narrow")
def narrow_nap(seconds: float) -> dict[str, Any]:
    return _sleep(seconds, "")


@unblock(pool="quick")
def quick_nap(seconds: float, mark: str = "") -> dict[str, Any]:
    return _sleep(seconds, mark)


@unblock(pool="polite")
def polite_nap(seconds: float, mark: str = "") -> dict[str, Any]:
    return _sleep(seconds, mark)


@unblock(pool="process")
def echo(data: Any) -> Any:
    """Sends its argument back (large buffers travel out of band both ways)."""
    return data


@unblock(pool="thread")
def thread_pid() -> int:
    return os.getpid()


def _arg(handler: tornado.web.RequestHandler, name: str, default: str) -> str:
    return handler.get_query_argument(name, default)


class Pair(tornado.web.RequestHandler):
    async def get(self) -> None:
        ms = float(_arg(self, "ms", "300"))
        calls = await asyncio.gather(burn(ms), burn(ms))
        self.write({"worker": os.getpid(), "calls": list(calls)})


class Burn(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"worker": os.getpid(), **await burn(float(_arg(self, "ms", "5")))})


NAPS = {"process": nap, "narrow": narrow_nap, "quick": quick_nap, "polite": polite_nap}


class Nap(tornado.web.RequestHandler):
    @cancel_on_disconnect
    async def get(self) -> None:
        fn = NAPS[_arg(self, "pool", "process")]
        seconds = float(_arg(self, "s", "1"))
        mark = _arg(self, "mark", "")
        if mark:
            Path(mark + ".worker").write_text(str(os.getpid()))
        try:
            result = await (fn(seconds) if fn is narrow_nap else fn(seconds, mark))
        except Overloaded as error:  # the broker's refusal, with its hint, as @unblock sends it
            self.set_status(503)
            self.set_header("Retry-After", str(error.retry_after))
            self.write({"overloaded": str(error)})
            return
        self.write({"worker": os.getpid(), **result})


class Thread(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write({"worker": os.getpid(), "thread_pid": await thread_pid()})


class Echo(tornado.web.RequestHandler):
    async def get(self) -> None:
        data = os.urandom(int(_arg(self, "kib", "16384")) * 1024)
        kinds = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}
        same = {}
        for name, value in kinds.items():
            back = await echo(value)
            same[name] = type(back) is type(value) and bytes(back) == data
        self.write(same)


application = tornado.web.Application(
    [(r"/pair", Pair), (r"/burn", Burn), (r"/nap", Nap), (r"/thread", Thread), (r"/echo", Echo)]
)
