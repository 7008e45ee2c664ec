"""Helpers for the decorator tests: a real Tornado server on 127.0.0.1, HTTP and raw-socket
clients, process-pool task functions (importable by forkserver children) and a check that
tests leave no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil
import tornado.web
from runner_support import pid_exited
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

# Infrastructure processes multiprocessing keeps for the whole test session.
_SHARED_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def run(main: Callable[[], Coroutine[Any, Any, Any]], *, debug: bool = False) -> Any:
    """Run `main()` on a fresh event loop."""
    return asyncio.run(main(), debug=debug)


@contextlib.asynccontextmanager
async def serving(app: tornado.web.Application) -> AsyncIterator[int]:
    """Serve `app` on an ephemeral loopback port for the duration of the block."""
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield port
    finally:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 10)


async def fetch(port: int, path: str, **kwargs: Any) -> HTTPResponse:
    """GET (or `method=...`) `path` from the server and return the response, errors included."""
    client = AsyncHTTPClient()
    kwargs.setdefault("request_timeout", 30)
    return await client.fetch(f"http://127.0.0.1:{port}{path}", raise_error=False, **kwargs)


async def open_request(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a raw GET and return the connection, so the test can read slowly or hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `predicate` on the loop until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    return not pid_exited(pid)


async def read_pid(path: Path, timeout: float = 20.0) -> int:
    """The pid a pool task wrote to `path`, once it is there in full."""
    await wait_until(lambda: path.exists() and path.read_text().strip().isdigit(), timeout)
    return int(path.read_text())


def worker_processes() -> list[psutil.Process]:
    """Descendants of this test process, minus multiprocessing's shared helpers."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if not any(name in " ".join(child.cmdline()) for name in _SHARED_HELPERS):
                found.append(child)
    return found


def assert_no_workers_left(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while worker_processes():
        if time.monotonic() > deadline:
            raise AssertionError(f"processes left behind: {worker_processes()}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- functions run in process pools (module level so children can import them) ----


def square(x: int) -> int:
    return x * x


def child_pid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def exit_with(code: int) -> None:
    os._exit(code)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)


def spin(milliseconds: float) -> int:
    """Pure-Python CPU loop for about `milliseconds`; returns the iteration count."""
    end = time.perf_counter() + milliseconds / 1000
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


def make_lock() -> Any:
    return threading.Lock()
