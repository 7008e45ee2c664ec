"""A generator handler verb under @unblock streams: chunks arrive in order while the
generator still runs, a slow client slows the producer, a disconnect closes the generator."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import tornado.web
from decorators_support import fetch, hang_up, open_request, run, serving, wait_until
from tornado_run.decorators import TaskCancelled, check_cancelled, unblock


def test_chunks_arrive_in_order_while_the_generator_still_runs() -> None:
    first_seen = threading.Event()
    waited_for_client: list[bool] = []

    class Stream(tornado.web.RequestHandler):
        @unblock
        def get(self) -> Iterator[str]:
            yield "chunk-0;"
            # Only a streamed response lets the client see chunk-0 before this returns.
            waited_for_client.append(first_seen.wait(20))
            for i in range(1, 5):
                yield f"chunk-{i};"

    received: list[bytes] = []

    def on_chunk(chunk: bytes) -> None:
        received.append(chunk)
        first_seen.set()

    async def main() -> int:
        async with serving(tornado.web.Application([("/", Stream)])) as port:
            response = await fetch(port, "/", streaming_callback=on_chunk)
            return response.code

    assert run(main) == 200
    assert waited_for_client == [True]
    assert b"".join(received) == b"".join(f"chunk-{i};".encode() for i in range(5))
    assert len(received) >= 2


def test_a_client_that_does_not_read_slows_the_producer() -> None:
    produced: list[int] = []
    chunk = b"x" * (1 << 20)
    total = 64

    class Big(tornado.web.RequestHandler):
        @unblock
        def get(self) -> Iterator[bytes]:
            for i in range(total):
                produced.append(i)
                yield chunk

    async def stalled_count() -> int:
        """How far the producer gets while the client reads nothing."""
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() - stable_since < 0.5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if len(produced) != last:
                last, stable_since = len(produced), time.monotonic()
        return len(produced)

    async def main() -> tuple[int, int]:
        async with serving(tornado.web.Application([("/", Big)])) as port:
            reader, writer = await open_request(port, "/")
            stalled = await stalled_count()
            received = 0
            while data := await asyncio.wait_for(reader.read(1 << 20), 15):
                received += len(data)
                if received >= total * len(chunk):
                    break
            await hang_up(writer)
            return stalled, received

    stalled, received = run(main)
    assert stalled < total // 2  # bounded by the hand-off depth and socket buffers
    assert received >= total * len(chunk)
    assert len(produced) == total


def test_a_disconnect_closes_the_generator() -> None:
    closed = threading.Event()
    produced: list[int] = []

    class Endless(tornado.web.RequestHandler):
        @unblock
        def get(self) -> Iterator[str]:
            try:
                for i in range(100_000):
                    produced.append(i)
                    yield f"{i}\n"
                    time.sleep(0.01)
            finally:
                closed.set()

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Endless)])) as port:
            reader, writer = await open_request(port, "/")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            await hang_up(writer)
            await wait_until(closed.is_set)

    run(main)
    assert closed.is_set()
    assert len(produced) < 100_000


def test_a_disconnect_lets_a_generator_busy_between_chunks_stop_early() -> None:
    stopped = threading.Event()

    class Busy(tornado.web.RequestHandler):
        @unblock
        def get(self) -> Iterator[str]:
            yield "header\n"
            try:
                for _ in range(3000):  # 30 s of work before the next chunk
                    check_cancelled()
                    time.sleep(0.01)
            except TaskCancelled:
                stopped.set()
                raise
            yield "never\n"

    async def main() -> None:
        async with serving(tornado.web.Application([("/", Busy)])) as port:
            reader, writer = await open_request(port, "/")
            await asyncio.wait_for(reader.readuntil(b"header"), 10)
            await hang_up(writer)
            await wait_until(stopped.is_set)

    run(main)
    assert stopped.is_set()


def test_a_generator_failing_before_its_first_chunk_answers_500() -> None:
    class Broken(tornado.web.RequestHandler):
        @unblock
        def get(self) -> Iterator[str]:
            raise RuntimeError("no data")
            yield "never"

    async def main() -> int:
        async with serving(tornado.web.Application([("/", Broken)])) as port:
            return (await fetch(port, "/")).code

    assert run(main) == 500
