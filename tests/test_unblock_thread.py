"""@unblock on the thread pool: awaitable functions, handler verbs, errors, timeouts."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import tornado.web
from decorators_support import fetch, run, serving, wait_until
from tornado_run.decorators import TaskCancelled, check_cancelled, pools, unblock

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@unblock
def add(a: int, b: int = 1) -> int:
    """Add two numbers."""
    return a + b


@unblock(pool="thread", timeout=5)
def where() -> tuple[str, str]:
    return threading.current_thread().name, request_id.get()


def test_decorated_function_keeps_name_doc_and_signature() -> None:
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert str(inspect.signature(add)) == str(inspect.signature(add.__wrapped__))
    assert inspect.iscoroutinefunction(add)
    assert run(lambda: add(2, b=3)) == 5


def test_call_runs_in_a_pool_thread_with_the_callers_contextvars() -> None:
    async def main() -> tuple[str, str]:
        request_id.set("req-42")
        return await where()

    thread_name, seen = run(main)
    assert thread_name != threading.current_thread().name
    assert thread_name.startswith("tornado-run-thread")
    assert seen == "req-42"


def test_a_concurrent_futures_executor_can_be_the_pool() -> None:
    with ThreadPoolExecutor(2, thread_name_prefix="mine") as executor:

        @unblock(pool=executor)
        def name() -> str:
            return threading.current_thread().name

        assert run(name).startswith("mine")


def test_fast_request_completes_while_a_slow_unblocked_one_runs() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    class Slow(tornado.web.RequestHandler):
        @unblock
        def get(self) -> dict[str, str]:
            started.set()
            release.wait(20)
            return {"slow": "done"}

    class Fast(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("fast")

    async def main() -> None:
        app = tornado.web.Application([("/slow", Slow), ("/fast", Fast)])
        async with serving(app) as port:

            async def call(path: str) -> None:
                response = await fetch(port, path)
                assert response.code == 200
                finished.append(path)

            slow = asyncio.ensure_future(call("/slow"))
            await wait_until(started.is_set)
            await call("/fast")
            release.set()
            await slow

    run(main)
    assert finished == ["/fast", "/slow"]


class Returns(tornado.web.RequestHandler):
    @unblock
    def get(self, kind: str) -> Any:
        values: dict[str, Any] = {
            "dict": {"a": 1},
            "list": [1, "two"],
            "str": "text",
            "bytes": b"\x00raw",
            "none": None,
            "int": 7,
        }
        if kind == "none":
            self.set_header("X-Ran", "yes")  # headers set in the thread are still sent
        return values[kind]


def test_return_values_are_written_on_the_loop_by_type() -> None:
    async def main() -> dict[str, Any]:
        app = tornado.web.Application([(r"/(\w+)", Returns)])
        async with serving(app) as port:
            kinds = ["dict", "list", "str", "bytes", "none", "int"]
            responses = await asyncio.gather(*(fetch(port, f"/{k}") for k in kinds))
            return dict(zip(kinds, responses, strict=True))

    got = run(main)
    assert json.loads(got["dict"].body) == {"a": 1}
    assert got["dict"].headers["Content-Type"].startswith("application/json")
    assert json.loads(got["list"].body) == [1, "two"]
    assert got["list"].headers["Content-Type"].startswith("application/json")
    assert got["str"].body == b"text"
    assert got["bytes"].body == b"\x00raw"
    assert (got["none"].code, got["none"].body, got["none"].headers["X-Ran"]) == (200, b"", "yes")
    assert got["int"].code == 500


class Raises(tornado.web.RequestHandler):
    @unblock
    def get(self, what: str) -> None:
        if what == "teapot":
            raise tornado.web.HTTPError(418, reason="Short And Stout")
        raise ValueError("boom")


def test_handler_errors_pass_through_with_their_status() -> None:
    async def main() -> tuple[Any, Any]:
        app = tornado.web.Application([(r"/(\w+)", Raises)])
        async with serving(app) as port:
            return await fetch(port, "/teapot"), await fetch(port, "/value")

    teapot, value = run(main)
    assert (teapot.code, teapot.reason) == (418, "Short And Stout")
    assert value.code == 500


def test_thread_timeout_answers_504_and_check_cancelled_stops_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pools.configure("thread_timeouts", kind="thread", size=2)
    stopped = threading.Event()

    class Stubborn(tornado.web.RequestHandler):
        @unblock(pool="thread_timeouts", timeout=0.3)
        def get(self) -> str:
            try:
                for _ in range(2000):
                    check_cancelled()
                    time.sleep(0.005)
            except TaskCancelled:
                stopped.set()
                raise
            return "never"

    async def main() -> tuple[Any, float]:
        async with serving(tornado.web.Application([("/", Stubborn)])) as port:
            begin = time.monotonic()
            response = await fetch(port, "/")
            elapsed = time.monotonic() - begin
            await wait_until(stopped.is_set)
            return response, elapsed

    with caplog.at_level(logging.WARNING, logger="tornado_run.pools"):
        response, elapsed = run(main)
    assert response.code == 504
    assert 0.3 <= elapsed < 5  # answered at the timeout, not when the 10 s loop would end
    assert pools.stats()["thread_timeouts"]["abandoned"] == 1
    assert pools.stats()["thread_timeouts"]["timed_out"] == 1
    assert any("abandoned" in record.getMessage() for record in caplog.records)


def test_loop_is_never_blocked_while_unblocked_work_runs(caplog: pytest.LogCaptureFixture) -> None:
    class Sleepy(tornado.web.RequestHandler):
        @unblock
        def get(self) -> str:
            time.sleep(0.6)
            return "rested"

    class Blocking(tornado.web.RequestHandler):
        def get(self) -> None:  # the control: the same work on the loop must be caught
            time.sleep(0.6)
            self.write("rested")

    async def main(path: str, requests: int) -> int:
        asyncio.get_running_loop().slow_callback_duration = 0.25
        app = tornado.web.Application([("/unblock", Sleepy), ("/blocking", Blocking)])
        async with serving(app) as port:
            responses = await asyncio.gather(*(fetch(port, path) for _ in range(requests)))
        return max(r.code for r in responses)

    def longest_callback() -> float:
        """Longest loop callback asyncio's debug mode reported (0 if none passed 0.25 s)."""
        took = [re.search(r"took ([0-9.]+) seconds", r.getMessage()) for r in caplog.records]
        return max((float(m.group(1)) for m in took if m), default=0.0)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert asyncio.run(main("/unblock", 3), debug=True) == 200
        # The work takes 0.6 s; a noisy machine may stall a callback briefly, never that long.
        assert longest_callback() < 0.5
        assert asyncio.run(main("/blocking", 1), debug=True) == 200
        assert longest_callback() >= 0.5, "the debug-mode check failed to see a blocked loop"


def test_unknown_pool_fails_the_first_call_naming_the_declared_pools() -> None:
    @unblock(pool="nope")  # decoration does not need the pool yet
    def f() -> None: ...

    with pytest.raises(ValueError, match=r"pool 'nope' is not declared.*process.*thread"):
        run(f)


def test_bad_timeout_or_async_function_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"timeout=-1.*expected seconds > 0"):

        @unblock(timeout=-1)
        def g() -> None: ...

    with pytest.raises(TypeError, match="already runs on the event loop"):

        @unblock
        async def h() -> None: ...

    with pytest.raises(TypeError, match="expected a pool name"):
        unblock(pool=3)(lambda: None)  # type: ignore[call-overload]
