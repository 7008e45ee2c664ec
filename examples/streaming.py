"""Stream a response produced by blocking code: a generator under `@unblock` runs in one
thread and each chunk it yields is written and flushed on the event loop as it comes.

    tornado-run examples.streaming:application
    curl -N 'localhost:8000/countdown/5?interval_ms=500'   # one line every half second
    curl -N 'localhost:8000/export.csv?rows=100000' | tail -1

A slow client slows the producer (the queue between them is bounded), and a client that
disconnects closes the generator, so its `finally` block runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import tornado.web
from tornado_run.decorators import unblock

MAX_ROWS = 1_000_000


def _int_argument(handler: tornado.web.RequestHandler, name: str, default: int, top: int) -> int:
    raw = handler.get_query_argument(name, str(default))
    if not raw.isdigit() or int(raw) > top:
        raise tornado.web.HTTPError(400, reason=f"{name} must be an integer 0..{top}, got {raw!r}")
    return int(raw)


# --8<-- [start:countdown]
class Countdown(tornado.web.RequestHandler):
    """`/countdown/N`: N lines, one every `interval_ms` (default 200), then `liftoff`."""

    @unblock
    def get(self, n: str) -> Iterator[str]:
        interval = _int_argument(self, "interval_ms", 200, 10_000) / 1000
        for i in range(min(int(n), 1000), 0, -1):
            yield f"{i}\n"
            time.sleep(interval)  # stands for any blocking producer: a cursor, a file, a socket
        yield "liftoff\n"


# --8<-- [end:countdown]


class Export(tornado.web.RequestHandler):
    """`/export.csv?rows=N`: a CSV built row by row in a thread, sent in chunks of 1000 rows."""

    def prepare(self) -> None:
        # Headers are set on the loop thread; the generator below only produces bytes.
        self.set_header("Content-Type", "text/csv")

    @unblock
    def get(self) -> Iterator[bytes]:
        rows = _int_argument(self, "rows", 1000, MAX_ROWS)
        yield b"id,square\n"
        batch: list[str] = []
        for i in range(rows):
            batch.append(f"{i},{i * i}\n")
            if len(batch) == 1000:
                yield "".join(batch).encode()
                batch.clear()
        if batch:
            yield "".join(batch).encode()


application = tornado.web.Application([(r"/countdown/(\d+)", Countdown), (r"/export\.csv", Export)])
