"""run_on_executor: a drop-in for tornado.concurrent.run_on_executor in all its call forms,
awaited or yielded, plus pool names."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import tornado.web
from decorators_support import fetch, run, serving
from tornado import gen
from tornado_run.decorators import run_on_executor


class Service:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="default-attr")
        self._io = ThreadPoolExecutor(2, thread_name_prefix="named-attr")

    def close(self) -> None:
        self.executor.shutdown()
        self._io.shutdown()

    @run_on_executor
    def bare(self, x: int) -> tuple[int, str]:
        return x + 1, threading.current_thread().name

    @run_on_executor()
    def called(self, x: int) -> tuple[int, str]:
        return x + 2, threading.current_thread().name

    @run_on_executor(executor="_io")
    def attribute(self, x: int) -> tuple[int, str]:
        return x + 3, threading.current_thread().name

    @run_on_executor(executor="thread")  # no such attribute: the pool of that name
    def pool_by_executor_name(self, x: int) -> tuple[int, str]:
        return x + 4, threading.current_thread().name

    @run_on_executor(pool="thread")
    def pool_by_name(self, x: int) -> tuple[int, str]:
        return x + 5, threading.current_thread().name


FORMS = [
    ("bare", 1, "default-attr"),
    ("called", 2, "default-attr"),
    ("attribute", 3, "named-attr"),
    ("pool_by_executor_name", 4, "tornado-run-thread"),
    ("pool_by_name", 5, "tornado-run-thread"),
]


@pytest.fixture
def service() -> Generator[Service, None, None]:
    service = Service()
    yield service
    service.close()


@pytest.mark.parametrize(("method", "added", "thread"), FORMS)
def test_every_call_form_works_with_await(
    service: Service, method: str, added: int, thread: str
) -> None:
    async def main() -> tuple[bool, Any]:
        future = getattr(service, method)(10)
        return asyncio.isfuture(future), await future

    is_future, (value, name) = run(main)
    assert is_future
    assert value == 10 + added
    assert name.startswith(thread)


@pytest.mark.parametrize(("method", "added", "thread"), FORMS)
def test_every_call_form_works_with_yield_in_gen_coroutine(
    service: Service, method: str, added: int, thread: str
) -> None:
    @gen.coroutine
    def legacy() -> Generator[Any, Any, Any]:
        result = yield getattr(service, method)(10)
        return result

    async def main() -> Any:
        return await legacy()

    value, name = run(main)
    assert value == 10 + added
    assert name.startswith(thread)


def test_works_on_a_gen_coroutine_handler() -> None:
    class Legacy(tornado.web.RequestHandler):
        executor = ThreadPoolExecutor(1)

        @run_on_executor
        def compute(self, n: int) -> int:
            return n * n

        @gen.coroutine
        def get(self) -> Generator[Any, Any, None]:
            value = yield self.compute(12)
            self.write({"value": value})

    async def main() -> bytes:
        async with serving(tornado.web.Application([("/", Legacy)])) as port:
            return (await fetch(port, "/")).body

    try:
        assert run(main) == b'{"value": 144}'
    finally:
        Legacy.executor.shutdown()


def test_a_missing_executor_or_unknown_pool_is_a_clear_error() -> None:
    class NoExecutor:
        @run_on_executor
        def work(self) -> None: ...

    async def main() -> None:
        NoExecutor().work()

    with pytest.raises(AttributeError, match=r"NoExecutor\.executor is None.*pool name"):
        run(main)

    class LateGpu:
        @run_on_executor(pool="gpu")  # decoration does not need the pool yet
        def work(self) -> None: ...

    async def call_undeclared() -> None:
        await LateGpu().work()

    with pytest.raises(ValueError, match=r"pool 'gpu' is not declared.*process.*thread"):
        run(call_undeclared)
    with pytest.raises(TypeError, match="unknown argument"):
        run_on_executor(io_loop="x")
