"""The smallest useful tornado-run app: a plain handler, blocking work in a thread, CPU work in
a process.

Run it from the repository root (after the setup in docs/getting-started.md), one worker per
usable core:

    .venv/bin/tornado-run examples.quickstart:application --workers auto
    curl localhost:8000/                 # answers at once
    curl localhost:8000/hash/secret      # PBKDF2 (blocking) in the thread pool
    curl localhost:8000/fib/27           # recursive fib (CPU) in the process pool
"""

from __future__ import annotations

import hashlib
import os

import tornado.web
from tornado_run.decorators import unblock


# --8<-- [start:fib]
@unblock(pool="process", timeout=10)
def fib(n: int) -> int:
    """The n-th Fibonacci number, computed slowly in the process pool."""
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


# --8<-- [end:fib]


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"hello": "world", "pid": os.getpid()})


# --8<-- [start:hash]
class Hash(tornado.web.RequestHandler):
    @unblock
    def get(self, password: str) -> dict[str, str]:
        # Runs in a thread; the dict is written as JSON back on the event loop.
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), b"example-salt", 200_000)
        return {"pbkdf2_sha256": digest.hex()}


# --8<-- [end:hash]


# --8<-- [start:fib-handler]
class Fib(tornado.web.RequestHandler):
    async def get(self, n: str) -> None:
        if int(n) > 32:
            raise tornado.web.HTTPError(400, reason="n must be at most 32")
        self.write({"n": int(n), "fib": await fib(int(n))})


# --8<-- [end:fib-handler]


application = tornado.web.Application(
    [(r"/", Hello), (r"/hash/([^/]+)", Hash), (r"/fib/(\d+)", Fib)]
)
