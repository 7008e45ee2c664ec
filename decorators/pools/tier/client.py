"""The web worker's side of the CPU tier: `TierPool`, the process-kind pool under tornado-run.

Every process-kind pool of a worker shares one connection to the broker (`TierLink`), read
on the worker's event loop (`add_reader`, no threads). A call is encoded here (large buffers
in a memfd) and relayed by the broker to any idle process of its pool. A local timer answers
a timeout on time and tells the broker to kill the call's process; a caller that goes away
withdraws its call (and kills it when the pool sets `cancel_running`). When the broker dies,
the calls in flight fail with `WorkerCrashed` and the next call connects again (the master
starts a new broker on the same socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import TaskTimeout, WorkerCrashed
from .. import pickling
from ..admission import Admission
from ..api import PoolSpec, PoolStats
from ..offload import wire
from ..process import encode_call
from . import protocol
from .outbox import Outbox

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0


class TierLink:
    """This process's connection to the broker at `address`, on one event loop."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sock: socket.socket | None = None
        self.reader = wire.FrameReader()
        self.pending: dict[int, asyncio.Future[wire.Frame]] = {}
        self.declared: dict[str, asyncio.Future[None]] = {}
        self.outbox: Outbox | None = None
        self._ids = itertools.count(1)

    # ---- requests ---------------------------------------------------------------------

    async def declare(self, spec: PoolSpec) -> None:
        """Have the broker run pool `spec` (once per connection); raises the initializer's
        exception (its remote traceback as the cause) when it fails."""
        self._connect()
        waiting = self.declared.get(spec.name)
        if waiting is None:
            waiting = self.declared[spec.name] = asyncio.ensure_future(self._declare(spec))
        await asyncio.shield(waiting)

    async def _declare(self, spec: PoolSpec) -> None:
        call_id = next(self._ids)
        reply = self._expect(call_id)
        self.send(protocol.declaration(spec, call_id))
        frame = await reply
        if frame.kind != protocol.DECLARED:
            self.declared.pop(spec.name, None)
            wire.decode_reply(frame)  # raises the failure

    async def call(self, spec: PoolSpec, encoded: wire.Encoded, label: str, timeout: float) -> Any:
        """Send one encoded call and return its result (see `TierPool.run`)."""
        declared = self.declared.get(spec.name)
        if declared is None or not declared.done() or declared.exception() is not None:
            try:
                await self.declare(spec)
            except BaseException:
                _close_fds(encoded.fds)
                raise
        call_id = next(self._ids)
        reply = self._expect(call_id)
        target = protocol.call_target(spec.name, label)
        self.send(encoded.frame(wire.CALL, call_id, timeout or 0.0, target))
        timer = None
        if timeout:
            timer = self._loop().call_later(timeout, self._expire, call_id, label, timeout)
        try:
            frame = await reply
        except asyncio.CancelledError:
            if self.pending.pop(call_id, None) is not None:
                kill = bool(spec.options.get("cancel_running", False))
                self.send(protocol.cancel(call_id, kill=kill))
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return wire.decode_reply(frame)

    def _expect(self, call_id: int) -> asyncio.Future[wire.Frame]:
        future = self._loop().create_future()
        self.pending[call_id] = future
        return future

    def _expire(self, call_id: int, label: str, timeout: float) -> None:
        future = self.pending.pop(call_id, None)
        if future is None or future.done():
            return
        self.send(protocol.cancel(call_id, kill=True))
        future.set_exception(
            TaskTimeout(
                f"{label} timed out after {timeout:g}s; its process was killed", timeout=timeout
            )
        )

    # ---- the socket -------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self._lost("the event loop changed")
            self.loop = loop
        return loop

    def _connect(self) -> None:
        loop = self._loop()
        if self.sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(self.address)
        except OSError as error:
            sock.close()
            raise WorkerCrashed(
                f"the cpu tier at {self.address} is not reachable: {error}"
            ) from None
        sock.setblocking(False)
        self.sock = sock
        self.outbox = Outbox(loop, sock, lambda error: self._lost(f"writing failed: {error}"))
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, frame: wire.Frame) -> None:
        """Queue `frame` (its fds travel with it) for the next write."""
        if self.outbox is None:
            frame.close()
            return
        self.outbox.put(frame)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            alive = wire.receive(sock, self.reader)
            frames = self.reader.frames()
        except BlockingIOError:
            return
        except (OSError, wire.WireError, UnicodeDecodeError) as error:
            self._lost(f"reading from it failed: {error}")
            return
        for frame in frames:
            future = self.pending.pop(frame.call_id, None)
            if future is None or future.done():
                frame.close()
            else:
                future.set_result(frame)
        if not alive:
            self._lost("it closed the connection")

    def _lost(self, why: str) -> None:
        """Fail every call in flight with `WorkerCrashed`; the next call connects again."""
        sock, self.sock = self.sock, None
        outbox, self.outbox = self.outbox, None
        if outbox is not None:
            outbox.close()
        if sock is not None and self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(ValueError, RuntimeError):
                self.loop.remove_reader(sock.fileno())
        if sock is not None:
            sock.close()
        self.reader.close()
        self.reader = wire.FrameReader()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                with contextlib.suppress(RuntimeError):  # a future of a loop closed since
                    future.set_exception(
                        WorkerCrashed(f"the cpu tier went away ({why}) before the call finished")
                    )
        self.declared.clear()

    def close(self) -> None:
        self._lost("this worker closed its pools")


_links: dict[str, TierLink] = {}


def link_for(address: str) -> TierLink:
    """This process's link to the broker at `address`."""
    link = _links.get(address)
    if link is None:
        link = _links[address] = TierLink(address)
    return link


def _forget_links() -> None:
    _links.clear()  # a forked child must not share its parent's connection


os.register_at_fork(after_in_child=_forget_links)


class TierPool:
    """A process-kind pool served by the CPU tier; see `api.Pool`. The figures it reports
    are this worker's own calls: the master shows the tier's host-wide ones."""

    host_wide = True

    def __init__(self, spec: PoolSpec, address: str) -> None:
        self.spec = spec
        self.address = address
        # Admission is host-wide in the broker: this only counts this worker's calls.
        self._counts = Admission(spec, spec.kind, spec.size or 0, 1 << 30)
        self._closed = False

    async def declare(self) -> None:
        await link_for(self.address).declare(self.spec)

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
        label = f"{pickling.describe(fn)}()"
        limit = timeout if timeout is not None else self.spec.timeout
        counts = self._counts
        counts.admit()
        try:
            result: T = await link_for(self.address).call(self.spec, encoded, label, limit or 0.0)
        except TaskTimeout:
            counts.timed_out += 1
            raise
        except WorkerCrashed:
            counts.crashed += 1
            raise
        except asyncio.CancelledError:
            raise
        except BaseException:
            counts.failed += 1
            raise
        finally:
            counts.release()
        counts.completed += 1
        return result

    def stats(self) -> PoolStats:
        return self._counts.stats()

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking calls; the tier's processes are the master's to stop."""
        self._closed = True

    async def aclose(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._counts.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self._closed = True


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
