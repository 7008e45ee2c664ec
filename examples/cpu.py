"""CPU-bound work three ways, and a `fib` endpoint on the process pool.

A pure-Python loop holds the GIL: on the event loop it stalls every request of the worker, in
a thread pool it still stalls them (the loop thread waits for the GIL), and only a process pool
runs it beside the loop. Compare them while probing `/`:

    tornado-run examples.cpu:application --workers auto
    curl localhost:8000/blocking/200 & curl -w ' %{time_total}s\\n' localhost:8000/
    curl localhost:8000/process/200 & curl -w ' %{time_total}s\\n' localhost:8000/
    curl localhost:8000/fib/25

`/blocking/N`, `/thread/N` and `/process/N` each run N milliseconds (roughly, on a current
x86 core) of the same loop, `burn`. The process-pool functions are module-level, so the pool's
processes can import them; under `tornado-run --workers auto` the pool takes this worker's
share of the cores, so web workers times pool processes never oversubscribe the machine.
"""

from __future__ import annotations

import os

import tornado.web
from tornado_run.decorators import unblock

LOOPS_PER_MS = 22_000
"""Iterations of `burn`'s loop per millisecond on the machine this was tuned on."""

MAX_MS = 10_000


def burn(ms: int) -> int:
    """Spin a pure-Python loop for about `ms` milliseconds of CPU and return a checksum."""
    total = 0
    for i in range(ms * LOOPS_PER_MS):
        total += i * i
    return total & 0xFFFF


@unblock(pool="process")
def burn_in_process(ms: int) -> int:
    """`burn` in this worker's process pool."""
    return burn(ms)


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


@unblock(pool="process", timeout=30)
def fib(n: int) -> int:
    """The n-th Fibonacci number, computed the slow recursive way in the process pool."""
    return _fib(n)


def _checked_ms(value: str) -> int:
    ms = int(value)
    if ms > MAX_MS:
        raise tornado.web.HTTPError(400, reason=f"at most {MAX_MS} ms")
    return ms


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"ok": True, "pid": os.getpid()})


class Blocking(tornado.web.RequestHandler):
    """The anti-pattern: the loop runs the CPU work itself; nothing else is served meanwhile."""

    def get(self, ms: str) -> None:
        self.write({"variant": "blocking", "checksum": burn(_checked_ms(ms))})


class Threaded(tornado.web.RequestHandler):
    """Off the loop, but the GIL still makes the loop wait: barely better than blocking."""

    @unblock
    def get(self, ms: str) -> dict[str, object]:
        return {"variant": "thread", "checksum": burn(_checked_ms(ms))}


class Process(tornado.web.RequestHandler):
    """The right way for CPU work: another process, the loop stays free."""

    async def get(self, ms: str) -> None:
        checksum = await burn_in_process(_checked_ms(ms))
        self.write({"variant": "process", "checksum": checksum})


class Fib(tornado.web.RequestHandler):
    async def get(self, n: str) -> None:
        if int(n) > 35:
            raise tornado.web.HTTPError(400, reason="n must be at most 35")
        self.write({"n": int(n), "fib": await fib(int(n))})


application = tornado.web.Application(
    [
        (r"/", Index),
        (r"/blocking/(\d+)", Blocking),
        (r"/thread/(\d+)", Threaded),
        (r"/process/(\d+)", Process),
        (r"/fib/(\d+)", Fib),
    ]
)
