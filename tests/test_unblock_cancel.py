"""A client that disconnects cancels its work: a queued call never runs, and a running
process call is killed when its pool has cancel_running=True."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.web
from decorators_support import (
    assert_no_workers_left,
    fetch,
    hang_up,
    open_request,
    process_alive,
    read_pid,
    run,
    serving,
    wait_until,
)
from tornado_run.decorators import cancel_on_disconnect, pools, unblock

pools.configure("cancel_one", kind="thread", size=1)
pools.configure("kill_on_cancel", kind="process", size=1, cancel_running=True)
pools.configure("keep_on_cancel", kind="process", size=1)


@unblock(pool="kill_on_cancel")
def record_pid_and_sleep(pid_file: str, seconds: float) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@unblock(pool="keep_on_cancel")
def hold(pid_file: str, seconds: float) -> int:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@unblock(pool="keep_on_cancel")
def mark(path: str) -> int:
    Path(path).write_text("ran")
    return os.getpid()


@pytest.fixture(scope="module", autouse=True)
def close_pools() -> Iterator[None]:
    yield
    pools.shutdown(wait=True)
    assert_no_workers_left()


def test_disconnect_cancels_a_queued_thread_call() -> None:
    release = threading.Event()
    ran: list[str] = []

    class Work(tornado.web.RequestHandler):
        @unblock(pool="cancel_one")
        def get(self, name: str) -> str:
            ran.append(name)
            if name == "first":
                release.wait(20)
            return name

    def queued() -> int:
        return pools.stats().get("cancel_one", {}).get("queued", -1)

    async def main() -> list[int]:
        async with serving(tornado.web.Application([(r"/(\w+)", Work)])) as port:
            first = asyncio.ensure_future(fetch(port, "/first"))
            await wait_until(lambda: ran == ["first"])
            _reader, writer = await open_request(port, "/gone")
            await wait_until(lambda: queued() == 1)
            await hang_up(writer)
            await wait_until(lambda: queued() == 0)
            release.set()
            last = await fetch(port, "/last")  # FIFO: "gone" would have run before this
            return [(await first).code, last.code]

    assert run(main) == [200, 200]
    assert ran == ["first", "last"]


def test_disconnect_kills_a_running_process_call_when_the_pool_says_so(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    class Slow(tornado.web.RequestHandler):
        @cancel_on_disconnect
        async def get(self) -> None:
            self.write({"pid": await record_pid_and_sleep(str(pid_file), 30)})

    async def main() -> int:
        async with serving(tornado.web.Application([("/", Slow)])) as port:
            _reader, writer = await open_request(port, "/")
            pid = await read_pid(pid_file)
            await hang_up(writer)
            await wait_until(lambda: not process_alive(pid))
            return pid

    killed = run(main)
    assert not process_alive(killed)
    assert pools.stats()["kill_on_cancel"]["busy"] == 0


def test_disconnect_leaves_a_running_process_call_alone_by_default(tmp_path: Path) -> None:
    pid_file, marker = tmp_path / "pid", tmp_path / "marker"

    class Held(tornado.web.RequestHandler):
        @cancel_on_disconnect
        async def get(self, what: str) -> None:
            if what == "hold":
                self.write({"pid": await hold(str(pid_file), 1.0)})
            else:
                self.write({"pid": await mark(str(marker))})

    async def main() -> int:
        async with serving(tornado.web.Application([(r"/(\w+)", Held)])) as port:
            holder = asyncio.ensure_future(fetch(port, "/hold"))
            await read_pid(pid_file)
            _reader, writer = await open_request(port, "/mark")
            await wait_until(lambda: pools.stats()["keep_on_cancel"]["queued"] == 1)
            await hang_up(writer)
            await wait_until(lambda: pools.stats()["keep_on_cancel"]["queued"] == 0)
            response = await holder
            assert response.code == 200
            return int(pid_file.read_text())

    holder_pid = run(main)
    assert not marker.exists()  # the queued call was dropped, not run
    assert process_alive(holder_pid)  # and no worker process was killed for it
