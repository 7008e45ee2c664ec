"""Six ways to run a slow blocking call (a `time.sleep` or a local command) from a handler:
on the loop, fire-and-forget, an awaited coroutine, a thread pool, a timeout, a subprocess.

The seed measured the first five with `ab` (ApacheBench, from Debian's and Ubuntu's
apache2-utils package): blocking 0.99 req/s, fire-and-forget 556, awaiting a coroutine 101,
a thread pool 1912, `with_timeout` 116. Here each is done the tornado-run way (from the
repository root, after the setup in docs/getting-started.md):

    .venv/bin/tornado-run examples.async_tasks:application --workers 1
    ab -n 200 -c 50 'http://127.0.0.1:8000/blocking?ms=100'    # serialises every request
    ab -n 200 -c 50 'http://127.0.0.1:8000/background?ms=100'  # answers at once, job runs later
    ab -n 200 -c 50 'http://127.0.0.1:8000/coroutine?ms=100'   # awaits without blocking
    ab -n 200 -c 50 'http://127.0.0.1:8000/thread?ms=100'      # @unblock: thread pool
    ab -n 200 -c 50 'http://127.0.0.1:8000/timeout?ms=100'     # @unblock(timeout=0.05): 504
    curl 'http://127.0.0.1:8000/command?ms=100'                # a blocking subprocess, @unblock
    curl http://127.0.0.1:8000/jobs                            # background jobs finished here

`ms` (0 to 10000, default 100) is how long the blocking call takes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time

import tornado.web
from tornado_run.decorators import background, unblock

MAX_MS = 10_000
TIMEOUT_SECONDS = 0.05

_jobs_lock = threading.Lock()
_jobs_done = 0


def _ms(handler: tornado.web.RequestHandler) -> int:
    raw = handler.get_query_argument("ms", "100")
    if not raw.isdigit() or int(raw) > MAX_MS:
        raise tornado.web.HTTPError(400, reason=f"ms must be an integer 0..{MAX_MS}, got {raw!r}")
    return int(raw)


def slow_job(ms: int) -> None:
    """The blocking call every variant makes: it holds its thread for `ms` milliseconds."""
    global _jobs_done
    time.sleep(ms / 1000)
    with _jobs_lock:
        _jobs_done += 1


class Blocking(tornado.web.RequestHandler):
    """The anti-pattern: the event loop sleeps, so this worker serves nothing else meanwhile."""

    def get(self) -> None:
        slow_job(_ms(self))
        self.write({"variant": "blocking"})


# --8<-- [start:background]
class Background(tornado.web.RequestHandler):
    """Fire and forget: answer now; the job runs in the thread pool, errors are logged, and a
    graceful stop waits for it."""

    def get(self) -> None:
        background(slow_job, _ms(self), pool="thread")
        self.write({"variant": "background", "queued": True})


# --8<-- [end:background]


class Coroutine(tornado.web.RequestHandler):
    """Await a coroutine that waits without blocking: other requests run meanwhile."""

    async def get(self) -> None:
        await asyncio.sleep(_ms(self) / 1000)
        self.write({"variant": "coroutine"})


class Threaded(tornado.web.RequestHandler):
    """@unblock: the blocking body runs in the thread pool; the dict is written on the loop."""

    @unblock
    def get(self) -> dict[str, str]:
        slow_job(_ms(self))
        return {"variant": "thread"}


class WithTimeout(tornado.web.RequestHandler):
    """@unblock(timeout=...): the client gets 504 on time; the thread finishes on its own."""

    @unblock(timeout=TIMEOUT_SECONDS)
    def get(self) -> dict[str, str]:
        slow_job(_ms(self))
        return {"variant": "timeout"}


class Command(tornado.web.RequestHandler):
    """A blocking local command (the seed pinged a host) run from the thread pool."""

    @unblock
    def get(self) -> dict[str, object]:
        seconds = f"{_ms(self) / 1000:.3f}"
        done = subprocess.run(["sleep", seconds], capture_output=True, check=False)
        return {"variant": "command", "returncode": done.returncode}


class Jobs(tornado.web.RequestHandler):
    def get(self) -> None:
        with _jobs_lock:
            self.write({"pid": os.getpid(), "jobs_done": _jobs_done})


application = tornado.web.Application(
    [
        (r"/blocking", Blocking),
        (r"/background", Background),
        (r"/coroutine", Coroutine),
        (r"/thread", Threaded),
        (r"/timeout", WithTimeout),
        (r"/command", Command),
        (r"/jobs", Jobs),
    ]
)
