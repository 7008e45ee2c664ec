"""The "thread" pool kind: threads that run blocking calls and hand results straight back to
the caller's event loop.

Each call is one small job on a queue. The worker thread settles the caller's asyncio future
with a single `loop.call_soon_threadsafe`, skipping the concurrent.futures.Future chain that
`run_in_executor` builds, which is most of the dispatch cost.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import cancellation
from ..errors import TaskTimeout
from .admission import Admission
from .api import PoolSpec, PoolStats
from .offthread import run_in_thread, settle_threadsafe

T = TypeVar("T")
log = logging.getLogger("tornado_run.pools")


def default_thread_count() -> int:
    """The stdlib's default: min(32, cores + 4)."""
    return min(32, (os.cpu_count() or 1) + 4)


class _Job:
    __slots__ = ("args", "claim", "ctx", "finish", "fn", "future", "kwargs", "loop", "token")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx = contextvars.copy_context()
        self.loop = loop
        self.future = future
        # Whoever pops `claim` first owns the start: a worker (to run the job) or the loop (to
        # drop it unstarted). Likewise `finish`: the worker when the call returns, or the loop
        # when it abandons the running call. list.pop is atomic, so no lock is needed.
        self.claim = [True]
        self.finish = [True]
        self.token = cancellation.CancelToken()

    def take(self) -> bool:
        return _pop(self.claim)

    def end(self) -> bool:
        return _pop(self.finish)


def _pop(flag: list[bool]) -> bool:
    try:
        flag.pop()
    except IndexError:
        return False
    return True


class ThreadPool:
    """Runs calls in up to `size` threads, started on demand; see `api.Pool`."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        size = spec.size or default_thread_count()
        # Thread calls are mostly waiting on I/O, so a deeper default queue than processes.
        max_pending = spec.max_pending if spec.max_pending is not None else max(64, 16 * size)
        self._admission = Admission(spec, spec.kind, size, max_pending)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._live = 0  # threads that count toward size (abandoned ones do not)
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self._capped = False  # the abandoned-thread cap was hit (warned once)

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
        self._admission.admit()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, args, kwargs, loop, future)
        self._queue.put(job)
        if not self._idle.acquire(blocking=False):
            self._grow()
        if timeout is None:
            timeout = self.spec.timeout
        timer = loop.call_later(timeout, self._expire, job, timeout) if timeout else None
        try:
            result = await future
        except asyncio.CancelledError:
            self._give_up(job, "the caller was cancelled")
            raise
        except TaskTimeout:
            self._admission.timed_out += 1
            raise
        except BaseException:
            self._admission.failed += 1
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._admission.release()
        self._admission.completed += 1
        return result

    def _expire(self, job: _Job, timeout: float) -> None:
        if job.future.done():
            return
        name = getattr(job.fn, "__qualname__", repr(job.fn))
        if self._give_up(job, f"timed out after {timeout:g}s"):
            log.warning(
                "pool %r: %s() still running after its %gs timeout; its thread is abandoned "
                "(it keeps running; check_cancelled() lets it stop early)",
                self.spec.name,
                name,
                timeout,
            )
        job.future.set_exception(
            TaskTimeout(f"{name}() timed out after {timeout:g}s", timeout=timeout)
        )

    def _give_up(self, job: _Job, reason: str) -> bool:
        """Stop waiting for `job`; return True when its thread had to be abandoned."""
        if job.take():
            return False  # never started: the worker will skip it
        if not job.end():
            return False  # already returned: its result is on the way
        job.token.cancel(reason)
        self._admission.abandoned += 1
        self._live -= 1
        self._grow()
        return True

    def _grow(self) -> None:
        """Start a thread if fewer than `size` are working or idle."""
        if self._live >= self._admission.size or self._closed:
            return
        alive = sum(1 for t in self._threads if t.is_alive())
        if alive >= 2 * self._admission.size:
            if not self._capped:
                self._capped = True
                log.warning(
                    "pool %r: %d threads are busy in abandoned calls; not replacing them, "
                    "so the pool runs below its size until they finish",
                    self.spec.name,
                    alive - self._live,
                )
            return
        self._capped = False
        self._threads = {t for t in self._threads if t.is_alive()}
        self._live += 1
        name = f"tornado-run-{self.spec.name}-{len(self._threads)}"
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            if job.take():
                cancellation.bind(job.token)
                value, error = None, None
                try:
                    value = job.ctx.run(job.fn, *job.args, **job.kwargs)
                except BaseException as caught:
                    error = caught
                cancellation.bind(None)
                if not job.end():
                    return  # abandoned: a replacement thread has taken this one's place
                settle_threadsafe(job.loop, job.future, value, error)
            del job
            self._idle.release()

    def stats(self) -> PoolStats:
        return self._admission.stats()

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting calls; queued calls still run. With `wait`, join the threads for up
        to `timeout` seconds and log the ones still busy."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning(
                "pool %r: abandoning %d busy thread(s) at shutdown", self.spec.name, len(stuck)
            )

    async def aclose(self, timeout: float) -> None:
        await run_in_thread(lambda: self.close(True, timeout), f"close-pool-{self.spec.name}")
