"""The "process" pool kind: pebble worker processes started by forkserver.

pebble kills the process of a task that is cancelled while running and replaces it, and a
task whose process dies fails alone, so timeouts stop work and crashes stay isolated. Calls
wait in a queue here, not in pebble's pipe: a waiting call can then be cancelled without
killing a worker, and the pool never holds more than `size` tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import pebble
from tornado_run.runner import cpus, lifecycle

from . import pickling
from .admission import Admission
from .errors import TaskTimeout, WorkerCrashed, describe_exit
from .pool_api import PoolSpec, PoolStats

T = TypeVar("T")
log = logging.getLogger("tornado_run.pools")


def auto_process_count() -> int:
    """The worker's share of the cores under tornado-run, else every usable core."""
    return lifecycle.cpu_share() or cpus.usable_cores()


class _Task:
    __slots__ = ("fn", "future", "loop", "payload", "pebble_future")

    def __init__(
        self, fn: Callable[..., Any], payload: bytes, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.fn = fn
        self.payload = payload
        self.loop = loop
        self.future: asyncio.Future[bytes] = loop.create_future()
        self.pebble_future: Future[bytes] | None = None


class ProcessPool:
    """A pebble ProcessPool behind bounded admission; see `pool_api.Pool`.

    Options: `cancel_running` (bool, default False) also kills a running task whose caller
    went away (client disconnect), not only a waiting one.
    """

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        size = spec.size or auto_process_count()
        max_pending = spec.max_pending if spec.max_pending is not None else max(16, 8 * size)
        self._admission = Admission(spec, spec.kind, size, max_pending)
        self._cancel_running = bool(spec.options.get("cancel_running", False))
        self._lock = threading.RLock()  # guards _waiting, _running and _pebble
        self._waiting: deque[_Task] = deque()
        self._running = 0
        self._pebble: pebble.ProcessPool | None = None
        self._starting: asyncio.Future[None] | None = None
        self._closed = False

    async def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> T:
        if self._closed:
            raise RuntimeError(f"pool {self.spec.name!r} is shut down")
        payload = pickling.pack(fn, args, kwargs)
        self._admission.admit()
        try:
            if self._pebble is None:
                await self._start()
            result: T = pickling.unpack(await self._submit(fn, payload, timeout))
        finally:
            self._admission.release()
        return result

    async def _submit(self, fn: Callable[..., Any], payload: bytes, timeout: float | None) -> bytes:
        loop = asyncio.get_running_loop()
        task = _Task(fn, payload, loop)
        with self._lock:
            if self._running < self._admission.size:
                self._running += 1
                self._schedule(task)
            else:
                self._waiting.append(task)
        if timeout is None:
            timeout = self.spec.timeout
        timer = loop.call_later(timeout, self._expire, task, timeout) if timeout else None
        try:
            result = await task.future
        except asyncio.CancelledError:
            self._withdraw(task, kill=self._cancel_running)
            raise
        except TaskTimeout:
            self._admission.timed_out += 1
            raise
        except WorkerCrashed:
            self._admission.crashed += 1
            raise
        except BaseException:
            self._admission.failed += 1
            raise
        finally:
            if timer is not None:
                timer.cancel()
        self._admission.completed += 1
        return result

    async def _start(self) -> None:
        """Start the pebble pool off the loop and prove that a worker process can run a task."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._start_blocking))
        try:
            await asyncio.shield(self._starting)
        finally:
            if self._starting.done() and self._starting.exception() is not None:
                self._starting = None

    def _start_blocking(self) -> None:
        context = multiprocessing.get_context("forkserver")
        # Replacement workers fork from a server that has already imported this library.
        context.set_forkserver_preload(["tornado_run.decorators.pickling"])
        executor = pebble.ProcessPool(max_workers=self._admission.size, context=context)
        try:
            executor.schedule(pickling.run_packed, args=(pickling.pack(int, (), {}),)).result(
                timeout=60
            )
        except BrokenProcessPool as error:
            executor.stop()  # type: ignore[no-untyped-call]
            raise self._broken(error) from None
        with self._lock:
            self._pebble = executor

    def _schedule(self, task: _Task) -> None:
        """Hand `task` to pebble (the caller holds the lock and counted it in `_running`)."""
        try:
            if self._pebble is None:
                raise RuntimeError("the pool was stopped")
            future = self._pebble.schedule(pickling.run_packed, args=(task.payload,))
        except RuntimeError as error:  # pebble refuses work once its pool broke
            self._pebble = None
            failure = WorkerCrashed(f"process pool {self.spec.name!r} is not running: {error}")
            self._running -= 1
            task.loop.call_soon_threadsafe(_settle_error, task.future, failure)
            return
        task.pebble_future = future
        future.add_done_callback(lambda done: self._on_done(task, done))

    def _on_done(self, task: _Task, done: Future[bytes]) -> None:
        """Runs in a pebble thread: pass the outcome to the loop and start the next call."""
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            task.loop.call_soon_threadsafe(self._settle, task, done)
        with self._lock:
            self._running -= 1
            while self._waiting and self._running < self._admission.size:
                self._running += 1
                self._schedule(self._waiting.popleft())

    def _settle(self, task: _Task, done: Future[bytes]) -> None:
        if task.future.done() or done.cancelled():
            return
        error = done.exception()
        if error is None:
            task.future.set_result(done.result())
        elif isinstance(error, pebble.ProcessExpired):
            task.future.set_exception(
                WorkerCrashed(
                    f"the process running {pickling.describe(task.fn)}() died with "
                    f"{describe_exit(error.exitcode)}",
                    exitcode=error.exitcode,
                )
            )
        elif isinstance(error, BrokenProcessPool):
            with self._lock:
                self._pebble = None  # the next call builds a fresh pool
            task.future.set_exception(self._broken(error))
        else:
            task.future.set_exception(error)

    def _broken(self, error: BaseException) -> WorkerCrashed:
        return WorkerCrashed(
            f"process pool {self.spec.name!r} cannot keep worker processes alive ({error}). "
            "Each worker re-imports the main module: a script that starts serving at import "
            'needs an `if __name__ == "__main__":` guard'
        )

    def _expire(self, task: _Task, timeout: float) -> None:
        if task.future.done():
            return
        self._withdraw(task, kill=True)
        task.future.set_exception(
            TaskTimeout(
                f"{pickling.describe(task.fn)}() timed out after {timeout:g}s; "
                "its process was killed",
                timeout=timeout,
            )
        )

    def _withdraw(self, task: _Task, *, kill: bool) -> None:
        """Drop a waiting task; cancel (and so kill) a running one when `kill` is set."""
        with self._lock:
            try:
                self._waiting.remove(task)
                return
            except ValueError:
                pending = task.pebble_future
        if pending is not None and kill:
            pending.cancel()  # pebble stops the worker process and starts a new one

    def stats(self) -> PoolStats:
        return self._admission.stats()

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting calls; let admitted ones finish for up to `timeout` seconds, then
        stop the worker processes."""
        self._closed = True
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        while wait and time.monotonic() < deadline:
            with self._lock:
                if not self._waiting and self._running == 0:
                    break
            time.sleep(0.01)
        with self._lock:
            executor, self._pebble = self._pebble, None
            abandoned = list(self._waiting)
            self._waiting.clear()
        for task in abandoned:
            failure = RuntimeError(f"pool {self.spec.name!r} shut down before the call ran")
            task.loop.call_soon_threadsafe(_settle_error, task.future, failure)
        if executor is None:
            return
        if self._running:
            log.warning(
                "pool %r: killing %d running task(s) at shutdown", self.spec.name, self._running
            )
        executor.stop()  # type: ignore[no-untyped-call]
        executor.join(timeout=max(0.1, deadline - time.monotonic()))

    async def aclose(self, timeout: float) -> None:
        await asyncio.to_thread(self.close, True, timeout)


def _settle_error(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
