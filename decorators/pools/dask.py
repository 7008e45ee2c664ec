"""The `dask` pool kind: `@unblock(pool=NAME)` runs calls on a dask.distributed cluster.

Declared with `pools.configure(NAME, kind="dask", address="tcp://host:8786")` or a
`[pools.NAME]` table with `kind = "dask"` and `address = ...`. Each process (each web worker)
owns one asynchronous `distributed.Client`, connected on the first call inside the running
event loop, so nothing crosses a fork; `aclose` closes it at graceful stop.

Differences from the local pools, because of what dask allows:
- A timed-out call answers `TaskTimeout` on time, once the scheduler has confirmed the
  cancel (a few ms): a task that had not started is dropped, but a task already running
  cannot be killed and runs to its end on its dask worker (counted as `abandoned`).
- A dask worker that dies mid-task makes the scheduler run the task again elsewhere; only after
  dask's `allowed-failures` does the call fail with `WorkerCrashed`.
- A lost, unreachable or silent scheduler fails calls with `ClusterUnavailable` (HTTP 503,
  one line naming the address) within about `connect_timeout` seconds instead of hanging: while
  calls wait, the scheduler is asked for a sign of life (dask_watch).

`distributed` is an optional dependency (`pip install 'tornado-run[dask]'`); it is imported
only when a dask pool makes its first call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..errors import Overloaded, TaskTimeout, WorkerCrashed
from . import dask_clients as clients
from .admission import Admission
from .api import PoolSpec, PoolStats
from .dask_options import DaskOptions, check_spec
from .dask_watch import SchedulerWatch

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

log = logging.getLogger("tornado_run.decorators.dask")

KIND = "dask"
DEFAULT_MAX_PENDING = 256
DEFAULT_CLOSE_TIMEOUT = 10.0
_CANCEL_WAIT = 1.0  # seconds a timed-out call waits for the scheduler to drop its task
_LOST = "scheduler-connection-lost"  # distributed's reason when the client loses its scheduler


class ClusterUnavailable(Overloaded, ConnectionError):
    """The dask scheduler cannot be reached, or was lost while calls waited on it (HTTP 503,
    with a `retry_after` of the pool's connect timeout)."""


def create_pool(spec: PoolSpec) -> DaskPool:
    """Factory for the registry's kind "dask": validate `spec` (see `check_spec`) and return
    a pool that connects on its first call. Does not import `distributed`."""
    return DaskPool(spec, check_spec(spec))


class DaskPool:
    """A per-process handle on a dask cluster, driven from this process's event loop."""

    def __init__(self, spec: PoolSpec, options: DaskOptions) -> None:
        self.spec = spec
        self.options = options
        self.address = options.address
        self.connect_timeout = options.connect_timeout
        size = spec.size or 0
        if spec.max_pending is not None:
            max_pending = spec.max_pending
        else:
            max_pending = max(16, 8 * size) if size else DEFAULT_MAX_PENDING
        # size 0: no local cap on calls in flight; the cluster's scheduler queues them.
        self._admission = Admission(spec, KIND, size, max_pending)
        self._pid = os.getpid()
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[Client] | None = None
        self._watch: SchedulerWatch | None = None
        self._slots: asyncio.Semaphore | None = None
        self._futures: set[Future[Any]] = set()
        self._cancelling: set[asyncio.Future[None]] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self._closed = False

    async def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> T:
        """Run `fn(*args, **kwargs)` on the cluster and return its result.

        Raises `Overloaded` at once when `size + max_pending` calls are admitted, `TaskTimeout`
        after `timeout` (or the pool's) seconds, connecting and queueing included,
        `WorkerCrashed` when dask gives up on the task after repeated worker deaths,
        `ClusterUnavailable` when the scheduler is unreachable or lost; the task's own exception
        is re-raised with its remote traceback.
        """
        if self._closed:
            raise RuntimeError(f"pool {self.spec.name!r} is shut down")
        if timeout is None:
            timeout = self.spec.timeout
        self._admission.admit()
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await self._run_admitted(fn, args, kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise  # the task's own TimeoutError
            self._admission.timed_out += 1
            if self._cancelling:
                # Let the scheduler drop the task before the caller hears of the timeout, so
                # a task that had not started yet does not start a moment later.
                await asyncio.wait(set(self._cancelling), timeout=_CANCEL_WAIT)
            raise TaskTimeout(
                f"{_name(fn)} did not finish within {timeout:g} s on dask pool {self.spec.name!r}",
                timeout=timeout,
            ) from None
        finally:
            self._admission.release()

    async def _run_admitted(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        from distributed.client import ClosedClientError
        from distributed.comm.core import CommClosedError

        client = await self._connected()
        async with self._slot():
            # dask.utils.apply keeps the caller's kwargs apart from submit()'s own keywords and
            # exists on every dask worker, so workers need not import tornado-run.
            from dask.utils import apply

            key = f"{_name(fn)}-{uuid.uuid4().hex}"
            try:
                future = client.submit(apply, fn, args, kwargs, key=key, pure=False)
            except (ClosedClientError, CommClosedError) as exc:
                raise self._unavailable(exc) from exc
            self._futures.add(future)
            self._watched(client).ensure_running()
            try:
                result = await self._outcome(future)
            finally:
                self._futures.discard(future)
        self._admission.completed += 1
        return cast(T, result)

    async def _outcome(self, future: Future[Any]) -> Any:
        """Await `future`, translating dask's ways of failing into this library's errors."""
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        try:
            return await future
        except FutureCancelledError as exc:
            if exc.reason == _LOST:
                self._admission.crashed += 1
                raise self._unavailable(exc) from None
            self._admission.failed += 1
            raise RuntimeError(
                f"dask pool {self.spec.name!r}: task {future.key!r} was cancelled ({exc.reason})"
            ) from None
        except KilledWorker as exc:
            self._admission.crashed += 1
            raise WorkerCrashed(
                f"dask gave up on {future.key!r} after its workers died: {exc}"
            ) from exc
        except asyncio.CancelledError:
            # Our caller gave up (timeout or client went away): the task must not run on.
            if not future.done():  # type: ignore[no-untyped-call]
                self._admission.abandoned += 1
                self._cancel_soon(future)
            raise
        except Exception:
            self._admission.failed += 1
            raise

    async def _connected(self) -> Client:
        """Return this process's client, connecting (once, shared by concurrent calls) if needed."""
        self._forget_foreign_client()
        client = self._client
        if client is not None and client.status == "running":
            return client
        # A client re-dialing a scheduler it lost gets the connect timeout to come back.
        if client is not None and client.status == "connecting":
            if await self._wait_running(client):
                return client
            if client.status == "connecting":
                raise self._unreachable(f"after {self.connect_timeout:g} s")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
            # Callers that timed out may leave nobody to read a failed connect's exception.
            self._connecting.add_done_callback(_retrieve)
        return await asyncio.shield(self._connecting)

    def _forget_foreign_client(self) -> None:
        """Drop a client inherited through fork or bound to another event loop (unusable here)."""
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid() or self._loop is not loop:
            old, old_loop = self._client, self._loop
            if old is not None and (self._pid != os.getpid() or not _alive(old_loop)):
                clients.abandon(old)
            self._pid, self._loop = os.getpid(), loop
            self._client, self._connecting, self._slots, self._watch = None, None, None, None
            self._futures.clear()
            self._cancelling.clear()

    async def _connect(self) -> Client:
        from distributed import Client

        old, self._client = self._client, None
        if old is not None:  # in the background: closing a lost client can take a while
            self._in_background(clients.close_quietly(old, self.connect_timeout), self._closing)
        client = Client(  # type: ignore[no-untyped-call]
            self.address,
            asynchronous=True,
            timeout=self.connect_timeout,
            set_as_default=False,
            security=self.options.security(),
        )
        try:
            await asyncio.wait_for(client, timeout=self.connect_timeout)
        except BaseException as exc:
            self._in_background(clients.close_quietly(client, self.connect_timeout), self._closing)
            if isinstance(exc, OSError | TimeoutError):
                raise self._unreachable(f"after {self.connect_timeout:g} s") from exc
            if isinstance(exc, Exception):  # e.g. a scheme whose transport is not installed
                raise self._unreachable(f"({_first_line(exc)})") from exc
            raise
        log.info("dask pool %r connected to %s", self.spec.name, self.address)
        self._client = client
        return self._client

    async def _wait_running(self, client: Client) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        while client.status == "connecting" and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return client.status == "running"

    def _slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Bound calls in flight on the cluster to `size` when the spec sets one."""
        if self.spec.size is None:
            return contextlib.nullcontext()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.spec.size)
        return self._slots

    def _watched(self, client: Client) -> SchedulerWatch:
        """The scheduler watch of `client` (see dask_watch), made on its first call."""
        if self._watch is None or self._watch.client is not client:
            if self._watch is not None:
                self._watch.stop()
            self._watch = SchedulerWatch(client, self.connect_timeout, lambda: bool(self._futures))
        return self._watch

    @staticmethod
    def _in_background(work: Coroutine[Any, Any, None], tasks: set[asyncio.Future[None]]) -> None:
        """Run `work` without awaiting it, keeping a reference in `tasks` until it ends."""
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _unreachable(self, detail: str) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"dask scheduler {self.address} unreachable {detail} (pool {self.spec.name!r})",
            retry_after=self.connect_timeout,
        )

    def _unavailable(self, exc: BaseException) -> ClusterUnavailable:
        watch = self._watch
        lost = watch.lost_reason if watch is not None else None
        detail = lost or getattr(exc, "reason", None) or type(exc).__name__
        return ClusterUnavailable(
            f"dask scheduler {self.address} lost ({detail}) during a call on pool"
            f" {self.spec.name!r}",
            retry_after=self.connect_timeout,
        )

    def _cancel_soon(self, future: Future[Any]) -> None:
        client = self._client
        if client is None or client.status != "running":
            return
        self._in_background(
            clients.cancel_quietly(
                client, [future], self.connect_timeout, "tornado-run: caller gone"
            ),
            self._cancelling,
        )

    def stats(self) -> PoolStats:
        """Return this pool's counters; `size` is the cluster's thread count once connected
        (or the spec's `size`), `busy` the calls submitted to the cluster."""
        stats = self._admission.stats()
        busy = len(self._futures)
        stats["size"] = self._size()
        stats["busy"] = busy
        stats["queued"] = max(0, self._admission.in_flight - busy)
        return stats

    def _size(self) -> int:
        if self.spec.size is not None:
            return self.spec.size
        client = self._client
        if client is None or self._pid != os.getpid():
            return 0
        info: Mapping[str, Any] = client.scheduler_info() or {}
        threads = info.get("total_threads", 0)
        return threads if isinstance(threads, int) else 0

    async def aclose(self, timeout: float) -> None:
        """Refuse new calls, give admitted ones up to `timeout` seconds, cancel the rest, then
        close the client."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self.close(wait=False, timeout=timeout)  # the client belongs to that other loop
            return
        self._closed = True
        deadline = loop.time() + max(0.0, timeout)
        while self._admission.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.02)
        client, self._client = self._client, None
        if self._watch is not None:
            self._watch.stop()
        if client is None or self._pid != os.getpid():
            return
        left = max(0.1, deadline - loop.time())
        if self._futures:
            await clients.cancel_quietly(
                client, list(self._futures), left, "tornado-run: pool closed"
            )
        await clients.close_quietly(client, left)

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Close from outside the pool's event loop (`pools.shutdown()`, a redeclared pool):
        run `aclose` on the loop that owns the client; with `wait`, block until it is done
        (at most `timeout` seconds), unless called on that loop's own thread."""
        self._closed = True
        loop = self._loop
        if self._client is None or loop is None or self._pid != os.getpid():
            return
        if not _alive(loop):
            clients.abandon(self._client)
            self._client = None
            return
        limit = DEFAULT_CLOSE_TIMEOUT if timeout is None else timeout
        closing = asyncio.run_coroutine_threadsafe(self.aclose(limit), loop)
        if wait and _running_loop() is not loop:
            try:
                closing.result(limit + 2)
            except Exception as exc:
                log.warning("closing dask pool %r failed: %r", self.spec.name, exc)


def _alive(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and not loop.is_closed() and loop.is_running()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "task"
