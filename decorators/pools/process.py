"""The "process" pool kind: pebble worker processes started by forkserver.

pebble kills the process of a task that is cancelled while running and replaces it, and a
task whose process dies fails alone, so timeouts stop work and crashes stay isolated.

Every admitted call goes to pebble at once, so its threads batch the work (handing calls over
one by one costs twice the CPU per call). A call withdrawn before it starts must not cost a
worker process, which is what cancelling a pebble task that is already in its pipe does: the
call's slot in a shared byte array is marked instead, and the child skips marked calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import pebble
from tornado_run.runner import lifecycle

from ..errors import TaskTimeout, WorkerCrashed
from . import pickling
from .admission import Admission
from .api import PoolSpec, PoolStats
from .offthread import run_in_thread, settle_threadsafe

T = TypeVar("T")
log = logging.getLogger("tornado_run.pools")


def auto_process_count() -> int:
    """Every usable core (affinity and cgroup quota aware)."""
    return lifecycle.usable_cores()


_SLOTS = 1 << 16  # skip flags; calls in flight must stay below this
_HEALTH_PERIOD = 1.0  # seconds between checks that pebble still runs the pool


class _PoolDown(WorkerCrashed):
    """pebble refused a call because its pool is broken or stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class _Task:
    __slots__ = ("fn", "future", "loop", "pebble_future", "slot")

    def __init__(self, fn: Callable[..., Any], loop: asyncio.AbstractEventLoop, slot: int) -> None:
        self.fn = fn
        self.loop = loop
        self.slot = slot
        self.future: asyncio.Future[bytes] = loop.create_future()
        self.pebble_future: Future[bytes] | None = None


class ProcessPool:
    """A pebble ProcessPool behind bounded admission; see `api.Pool`.

    Options: `cancel_running` (bool, default False) also kills a running task whose caller
    went away (client disconnect), not only a waiting one.
    """

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        size = spec.size or auto_process_count()
        max_pending = spec.max_pending if spec.max_pending is not None else max(16, 8 * size)
        self._admission = Admission(spec, spec.kind, size, min(max_pending, _SLOTS // 2 - size))
        self._cancel_running = bool(spec.options.get("cancel_running", False))
        self._lock = threading.Lock()  # guards _tasks (close() reads it from another thread)
        self._tasks: set[_Task] = set()
        self._sequence = 0
        self._skip: Any = None  # shared byte array, one flag per slot
        self._pebble: pebble.ProcessPool | None = None
        self._starting: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None
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
        if timeout is None:
            timeout = self.spec.timeout
        task = _Task(fn, loop, self._sequence % _SLOTS)
        self._sequence += 1
        try:
            self._schedule(task, payload, timeout)
        except _PoolDown:
            # pebble gives up on a pool whose idle workers died (say, the OOM killer): the
            # call is not to blame, so it gets a fresh pool.
            await self._start()
            self._schedule(task, payload, timeout)
        if self._watchdog is None or self._watchdog_loop is not loop:
            self._watchdog_loop = loop
            self._watchdog = loop.call_later(_HEALTH_PERIOD, self._check_health)
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

    def _schedule(self, task: _Task, payload: bytes, timeout: float | None) -> None:
        """Hand the call to pebble; `_PoolDown` (after dropping the pool) if it refuses."""
        self._skip[task.slot] = 0
        try:
            if self._pebble is None:
                raise RuntimeError("the pool was stopped")
            # pebble's own timeout counts from the start of the run: a backstop for a call
            # that started just as its caller gave up on it.
            future = self._pebble.schedule(
                pickling.run_packed, args=(payload, task.slot), timeout=timeout
            )
        except RuntimeError as error:  # pebble refuses work once its pool broke
            self._drop_pebble()
            raise _PoolDown(f"process pool {self.spec.name!r} is not running: {error}") from None
        task.pebble_future = future
        with self._lock:
            self._tasks.add(task)
        future.add_done_callback(functools.partial(self._on_done, task))

    def _on_done(self, task: _Task, done: Future[bytes]) -> None:
        """Runs in a pebble thread: hand the outcome to the loop."""
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            task.loop.call_soon_threadsafe(self._resolve, task, done)

    def _resolve(self, task: _Task, done: Future[bytes]) -> None:
        """On the loop: translate pebble's outcome into the call's result or error."""
        with self._lock:
            self._tasks.discard(task)
        if task.future.done() or done.cancelled():
            return
        error = done.exception()
        if error is None:
            task.future.set_result(done.result())
        elif isinstance(error, pebble.ProcessExpired):
            task.future.set_exception(
                WorkerCrashed(
                    f"the process running {pickling.describe(task.fn)}() died with "
                    f"{lifecycle.describe_exitcode(error.exitcode)}",
                    exitcode=error.exitcode,
                )
            )
        elif isinstance(error, BrokenProcessPool):
            self._drop_pebble()  # the next call builds a fresh pool
            task.future.set_exception(self._broken(error))
        elif isinstance(error, TimeoutError):
            task.future.set_exception(self._timeout(task, done_timeout(error)))
        else:
            task.future.set_exception(error)

    def _check_health(self) -> None:
        """Fail the calls of a pool pebble has given up on without failing them itself.

        pebble can mark its pool broken while a new call still sits in its internal queue
        (a worker died before the call was registered); that call would wait forever.
        """
        self._watchdog = None
        executor = self._pebble
        if executor is not None and not executor.active:
            self._drop_pebble()
            with self._lock:
                stranded = list(self._tasks)
            failure = self._broken(BrokenProcessPool("pebble stopped the pool"))
            for task in stranded:
                settle_threadsafe(task.loop, task.future, error=failure)
        if self._admission.in_flight > 0:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(_HEALTH_PERIOD, self._check_health)

    def _broken(self, error: BaseException) -> WorkerCrashed:
        return WorkerCrashed(
            f"process pool {self.spec.name!r} lost its worker processes ({error}). If they die "
            "at start: each one re-imports the main module, so a script that starts serving at "
            'import needs an `if __name__ == "__main__":` guard'
        )

    def _timeout(self, task: _Task, timeout: float) -> TaskTimeout:
        return TaskTimeout(
            f"{pickling.describe(task.fn)}() timed out after {timeout:g}s; its process was killed",
            timeout=timeout,
        )

    def _expire(self, task: _Task, timeout: float) -> None:
        if not task.future.done():
            self._withdraw(task, kill=True)
            task.future.set_exception(self._timeout(task, timeout))

    def _withdraw(self, task: _Task, *, kill: bool) -> None:
        """Skip a call that has not started; kill a running one when `kill` is set."""
        pending = task.pebble_future
        if pending is None or pending.done():
            return
        if not pending.running():
            self._skip[task.slot] = 1
        elif kill:
            pending.cancel()  # pebble stops the worker process and starts a new one

    def stats(self) -> PoolStats:
        return self._admission.stats()

    async def _start(self) -> None:
        """Start the pebble pool off the loop and prove that a worker process can run a task."""
        starting = self._starting
        if starting is None:
            starting = run_in_thread(self._start_blocking, f"start-pool-{self.spec.name}")
            starting.add_done_callback(self._started)
            self._starting = starting
        await asyncio.shield(starting)

    def _drop_pebble(self) -> None:
        """Forget a broken pebble pool (stopping it off the loop) so the next call starts anew."""
        broken, self._pebble, self._starting = self._pebble, None, None
        if broken is not None:
            threading.Thread(target=broken.stop, name="stop-broken-pool", daemon=True).start()

    def _started(self, starting: asyncio.Future[None]) -> None:
        failed = starting.cancelled() or starting.exception() is not None
        if failed and self._starting is starting:
            self._starting = None  # the next call tries again

    def _start_blocking(self) -> None:
        context = multiprocessing.get_context("forkserver")
        # Replacement workers fork from a server that has already imported this library; the
        # server and its children leave the web worker's process group (forkserver_group).
        context.set_forkserver_preload(
            [
                "tornado_run.decorators.pools.forkserver_group",
                "tornado_run.decorators.pools.pickling",
            ]
        )
        skip = self._skip if self._skip is not None else context.RawArray("b", _SLOTS)
        executor = pebble.ProcessPool(
            max_workers=self._admission.size,
            context=context,
            initializer=pickling.use_skip_flags,
            initargs=(skip,),
        )
        try:
            probe = executor.schedule(pickling.run_packed, args=(pickling.pack(int, (), {}), -1))
            _wait_for_probe(executor, probe)
        except BrokenProcessPool as error:
            executor.stop()  # type: ignore[no-untyped-call]
            raise self._broken(error) from None
        self._skip = skip
        self._pebble = executor

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting calls; let admitted ones finish for up to `timeout` seconds, then
        stop the worker processes (calls still running fail with `WorkerCrashed`)."""
        self._closed = True
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        while wait and self._admission.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        executor, self._pebble = self._pebble, None
        if executor is None:
            return
        with self._lock:
            unfinished = list(self._tasks)
        if unfinished:
            log.warning("pool %r: stopping %d unfinished call(s)", self.spec.name, len(unfinished))
        executor.stop()  # type: ignore[no-untyped-call]
        executor.join(timeout=max(0.1, deadline - time.monotonic()))
        for task in unfinished:
            failure = WorkerCrashed(f"pool {self.spec.name!r} shut down before the call finished")
            settle_threadsafe(task.loop, task.future, error=failure)

    async def aclose(self, timeout: float) -> None:
        await run_in_thread(lambda: self.close(True, timeout), f"close-pool-{self.spec.name}")


def _wait_for_probe(executor: pebble.ProcessPool, probe: Future[bytes]) -> None:
    """Wait until a first call has run; BrokenProcessPool if pebble gives up meanwhile (it
    may do so without failing the call) or nothing ran within a minute."""
    deadline = time.monotonic() + 60
    while not probe.done():
        if not executor.active or time.monotonic() > deadline:
            raise BrokenProcessPool("no worker process could run a first call")
        with contextlib.suppress(TimeoutError):
            probe.result(timeout=0.1)
    probe.result()


def done_timeout(error: BaseException) -> float:
    """The timeout pebble reports in its TimeoutError("Task timeout", timeout)."""
    args: tuple[Any, ...] = error.args
    return float(args[1]) if len(args) > 1 and isinstance(args[1], int | float) else 0.0
