"""The "process" pool kind in the process that uses it: a `Dispatcher` on the caller's event
loop and a zygote started through multiprocessing's forkserver (see `offload`).

Calls are pickled here, so an argument that cannot be pickled fails its own call at once.
Admission (`Overloaded` with `retry_after`) sits in front of the dispatcher; the dispatcher
runs one call per pool process, kills a call's process at its deadline and fails only the
call whose process died. Options: `cancel_running` (a running call whose caller went away is
killed too, not only a waiting one), `initializer` and `initargs` (run once in each pool
process before its first call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tornado_run.runner import lifecycle

from ..errors import TaskTimeout, WorkerCrashed
from . import pickling
from .admission import Admission
from .api import PoolSpec, PoolStats
from .offload import child, wire
from .offload.dispatcher import Dispatcher
from .offload.zygote import Zygote, ZygoteGone
from .offthread import run_in_thread

T = TypeVar("T")
log = logging.getLogger("tornado_run.pools")

_GUARD_HINT = (
    "each one re-imports the main module, so a script that starts serving at import needs "
    'an `if __name__ == "__main__":` guard'
)


def auto_process_count() -> int:
    """Every usable core (affinity and cgroup quota aware)."""
    return lifecycle.usable_cores()


_labels: dict[Any, str] = {}


def _label(fn: Callable[..., Any]) -> str:
    """How error messages name a call of `fn`, e.g. "app.fib()" (cached: it runs per call)."""
    try:
        return _labels[fn]
    except KeyError:
        label = _labels[fn] = f"{pickling.describe(fn)}()"
        return label
    except TypeError:  # an unhashable callable
        return f"{pickling.describe(fn)}()"


class _Engine:
    """The zygote and dispatcher serving one event loop."""

    def __init__(self, zygote: Zygote, dispatcher: Dispatcher) -> None:
        self.zygote = zygote
        self.dispatcher = dispatcher
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()

    @property
    def stale(self) -> bool:
        """True once the zygote is gone: a new engine must replace this one."""
        return not self.zygote.alive

    def stop(self) -> None:
        """Stop from any thread: the dispatcher on its loop, then the zygote."""
        loop = self.loop
        if loop.is_running() and threading.get_ident() != self.thread:
            done = threading.Event()

            def close() -> None:
                try:
                    self.dispatcher.close()
                finally:
                    done.set()

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(close)
                done.wait(5.0)
        else:
            with contextlib.suppress(RuntimeError):
                self.dispatcher.close()
        self.zygote.close()
        wire.spares.drop()


class ProcessPool:
    """Process pool on the offload transport; see `api.Pool` and the module docstring."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        size = spec.size or auto_process_count()
        max_pending = spec.max_pending if spec.max_pending is not None else max(16, 8 * size)
        self._admission = Admission(spec, spec.kind, size, max_pending)
        self._cancel_running = bool(spec.options.get("cancel_running", False))
        initializer = spec.options.get("initializer")
        initargs = tuple(spec.options.get("initargs", ()))
        self._init = child.init_blob(initializer, initargs) if initializer else None
        self._engine: _Engine | None = None
        self._starting: asyncio.Future[_Engine] | None = None
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
        encoded = encode_call(fn, args, kwargs)
        request = encoded.frame(wire.CALL, pool=self.spec.name)
        try:
            self._admission.admit()
        except BaseException:
            request.close()
            raise
        engine = self._engine
        if engine is None or engine.loop is not asyncio.get_running_loop() or engine.stale:
            try:
                engine = await self._engine_here()
            except BaseException:
                request.close()
                self._admission.release()
                raise
        limit = self.spec.timeout if timeout is None else timeout
        dispatcher = engine.dispatcher
        try:
            call = dispatcher.submit(request, timeout=limit or 0.0, label=_label(fn))
            reply = await call.future
        except asyncio.CancelledError:
            dispatcher.cancel(call, kill=self._cancel_running)
            raise
        except TaskTimeout:
            self._admission.timed_out += 1
            raise
        except WorkerCrashed:
            self._admission.crashed += 1
            raise
        finally:
            self._admission.release()
        try:
            result: T = wire.decode_reply(reply)
        except BaseException:
            self._admission.failed += 1
            raise
        self._admission.completed += 1
        return result

    async def _engine_here(self) -> _Engine:
        """The engine serving the running loop, started on first use (and again after its
        zygote died or the loop changed)."""
        engine = self._engine
        loop = asyncio.get_running_loop()
        if engine is not None and engine.loop is loop and not engine.stale:
            return engine
        if engine is not None:
            self._engine = None
            engine.stop()
        starting = self._starting
        if starting is None or starting.get_loop() is not loop:
            starting = self._starting = loop.create_task(self._start())
            starting.add_done_callback(self._started)
        return await asyncio.shield(starting)

    def _started(self, starting: asyncio.Future[_Engine]) -> None:
        if self._starting is starting:
            self._starting = None

    async def _start(self) -> _Engine:
        try:
            zygote = await run_in_thread(Zygote.start, f"start-pool-{self.spec.name}")
        except ZygoteGone as error:
            raise WorkerCrashed(
                f"process pool {self.spec.name!r} could not start its processes ({error}): "
                + _GUARD_HINT
            ) from None
        if self._closed:
            zygote.close()
            raise RuntimeError(f"pool {self.spec.name!r} is shut down")
        dispatcher = Dispatcher(self.spec.name, self._admission.size, zygote, init=self._init)
        dispatcher.start()
        engine = self._engine = _Engine(zygote, dispatcher)
        return engine

    def stats(self) -> PoolStats:
        return self._admission.stats()

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop accepting calls; let admitted ones finish for up to `timeout` seconds, then
        stop the pool processes (calls still running fail with `WorkerCrashed`)."""
        self._closed = True
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        engine = self._engine
        elsewhere = engine is not None and threading.get_ident() != engine.thread
        if wait and engine is not None and engine.loop.is_running() and elsewhere:
            while self._admission.in_flight > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        engine, self._engine = self._engine, None
        if engine is None:
            return
        busy = self._admission.in_flight
        if busy:
            log.warning("pool %r: stopping %d unfinished call(s)", self.spec.name, busy)
        engine.stop()

    async def aclose(self, timeout: float) -> None:
        self._closed = True
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if engine.loop is asyncio.get_running_loop():
            await engine.dispatcher.drain(timeout)
            engine.dispatcher.close()
            await run_in_thread(engine.zygote.close, f"close-pool-{self.spec.name}")
            wire.spares.drop()
        else:
            await run_in_thread(engine.stop, f"close-pool-{self.spec.name}")


def encode_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> wire.Encoded:
    """`fn(*args, **kwargs)` as a call frame's payload; `TypeError` naming `fn` when its
    arguments cannot be pickled."""
    try:
        return wire.encode_call(pickling.target_of(fn), args, kwargs)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as error:
        raise pickling.pickle_error(fn, error) from None
