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
- A lost or unreachable scheduler fails calls with `ClusterUnavailable` (one line naming the
  address) after at most `connect_timeout` seconds instead of hanging.

`distributed` is an optional dependency (`pip install 'tornado-run[dask]'`); it is imported
only when a dask pool makes its first call.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tornado_run.runner.lifecycle import ConfigurationError

from ..errors import TaskTimeout, WorkerCrashed
from .admission import Admission
from .api import PoolSpec, PoolStats

if TYPE_CHECKING:
    from distributed import Client, Future

T = TypeVar("T")

log = logging.getLogger("tornado_run.decorators.dask")

KIND = "dask"
INSTALL_HINT = "pip install 'tornado-run[dask]'"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_PENDING = 256
DEFAULT_CLOSE_TIMEOUT = 10.0
_CANCEL_WAIT = 1.0  # seconds a timed-out call waits for the scheduler to drop its task
OPTION_NAMES = ("address", "connect_timeout")
_LOST = "scheduler-connection-lost"  # distributed's reason when the client loses its scheduler
_ADDRESS_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


class ClusterUnavailable(WorkerCrashed, ConnectionError):
    """The dask scheduler cannot be reached or was lost while calls were waiting on it."""


def check_spec(spec: PoolSpec) -> tuple[str, float]:
    """Validate a dask pool declaration without importing `distributed`, so a bad one stops
    the start: return (address, connect_timeout), or raise `ConfigurationError` (one line) for
    a missing or malformed option, or when `distributed` is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise ConfigurationError(
            f"pools.{spec.name}: kind 'dask' needs the distributed package: {INSTALL_HINT}"
        )
    return _validate_options(spec.name, spec.options)


def create_pool(spec: PoolSpec) -> DaskPool:
    """Factory for the registry's kind "dask": validate `spec` (see `check_spec`) and return
    a pool that connects on its first call. Does not import `distributed`."""
    address, connect_timeout = check_spec(spec)
    return DaskPool(spec, address=address, connect_timeout=connect_timeout)


def _validate_options(name: str, options: Mapping[str, Any]) -> tuple[str, float]:
    for key, value in options.items():
        if key not in OPTION_NAMES:
            allowed = ", ".join(sorted({*OPTION_NAMES, "kind", "size", "max_pending", "timeout"}))
            raise ConfigurationError(
                f"pools.{name}.{key} = {value!r}: unknown setting for kind 'dask'"
                f" (allowed: {allowed})"
            )
    address = options.get("address")
    if not isinstance(address, str) or not address.startswith(_ADDRESS_SCHEMES):
        raise ConfigurationError(
            f"pools.{name}.address = {address!r}: kind 'dask' needs the scheduler address,"
            " e.g. 'tcp://10.0.0.5:8786'"
        )
    timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigurationError(
            f"pools.{name}.connect_timeout = {timeout!r}: expected seconds > 0"
        )
    return address, float(timeout)


class DaskPool:
    """A per-process handle on a dask cluster, driven from this process's event loop."""

    def __init__(self, spec: PoolSpec, *, address: str, connect_timeout: float) -> None:
        self.spec = spec
        self.address = address
        self.connect_timeout = connect_timeout
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
        self._slots: asyncio.Semaphore | None = None
        self._futures: set[Future[Any]] = set()
        self._cancelling: set[asyncio.Future[None]] = set()
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
        if (
            client is not None
            and client.status == "connecting"
            and await self._wait_running(client)
        ):
            return client
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
                _abandon(old)
            self._pid, self._loop = os.getpid(), loop
            self._client, self._connecting, self._slots = None, None, None
            self._futures.clear()
            self._cancelling.clear()

    async def _connect(self) -> Client:
        from distributed import Client

        old, self._client = self._client, None
        if old is not None:
            await _close_quietly(old, self.connect_timeout)
        try:
            client = await asyncio.wait_for(
                Client(  # type: ignore[no-untyped-call]
                    self.address,
                    asynchronous=True,
                    timeout=self.connect_timeout,
                    set_as_default=False,
                ),
                timeout=self.connect_timeout + 1,
            )
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailable(
                f"dask scheduler {self.address} unreachable after {self.connect_timeout:g} s"
                f" (pool {self.spec.name!r})"
            ) from exc
        except Exception as exc:  # e.g. a scheme whose transport is not installed
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterUnavailable(
                f"dask scheduler {self.address} unreachable: {detail} (pool {self.spec.name!r})"
            ) from exc
        log.info("dask pool %r connected to %s", self.spec.name, self.address)
        self._client = cast("Client", client)
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

    def _unavailable(self, exc: BaseException) -> ClusterUnavailable:
        detail = getattr(exc, "reason", None) or type(exc).__name__
        return ClusterUnavailable(
            f"dask scheduler {self.address} lost ({detail}) during a call on pool"
            f" {self.spec.name!r}"
        )

    def _cancel_soon(self, future: Future[Any]) -> None:
        client = self._client
        if client is None or client.status != "running":
            return
        cancelling = _cancel_quietly(
            client, [future], self.connect_timeout, "tornado-run: caller gone"
        )
        task = asyncio.ensure_future(cancelling)
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

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
        if client is None or self._pid != os.getpid():
            return
        left = max(0.1, deadline - loop.time())
        if self._futures:
            await _cancel_quietly(client, list(self._futures), left, "tornado-run: pool closed")
        await _close_quietly(client, left)

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Close from outside the pool's event loop (`pools.shutdown()`, a redeclared pool):
        run `aclose` on the loop that owns the client; with `wait`, block until it is done
        (at most `timeout` seconds), unless called on that loop's own thread."""
        self._closed = True
        loop = self._loop
        if self._client is None or loop is None or self._pid != os.getpid():
            return
        if not _alive(loop):
            _abandon(self._client)
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


def _abandon(client: Client) -> None:
    """Let go of a client whose event loop is gone (or of a parent's, after fork): nothing can
    await its close any more, so drop its scheduler connection now and mark it closed, which
    keeps its finalizer from trying to close it on a dead loop."""
    comm = getattr(client.scheduler_comm, "comm", None)
    with contextlib.suppress(Exception):
        if comm is not None:
            comm.abort()
    client.status = "closed"


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _cancel_quietly(
    client: Client, futures: list[Future[Any]], timeout: float, reason: str
) -> None:
    try:
        cancelling = client.cancel(futures, reason=reason)  # type: ignore[no-untyped-call]
        await asyncio.wait_for(cancelling, timeout)
    except Exception as exc:  # the scheduler may be gone; nothing left to cancel then
        log.debug("cancelling dask futures failed: %r", exc)


async def _close_quietly(client: Client, timeout: float) -> None:
    try:
        await asyncio.wait_for(client.close(timeout=timeout), timeout + 1)  # type: ignore[no-untyped-call]
    except Exception as exc:
        log.warning("closing the dask client failed: %r", exc)


def _name(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or "task"
