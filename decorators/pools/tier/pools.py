"""The broker's pools: one `Dispatcher` per declared process-kind pool, behind host-wide
admission (`size + max_pending` calls across every web worker), with the counters the master
shows once for the host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from tornado_run.runner import lifecycle

from ...errors import Overloaded, TaskTimeout, WorkerCrashed
from ..admission import Admission
from ..api import PoolSpec, PoolStats
from ..offload import child, wire
from ..offload.dispatcher import Call, Dispatcher, StartFailure
from ..offload.zygote import Spawner
from .protocol import Reply, describe_failure, message_of

log = logging.getLogger("tornado_run.tier")


class HostPool:
    """One pool of the tier. `submit` answers through `reply` exactly once per admitted call
    unless the call is withdrawn first."""

    def __init__(self, spec: PoolSpec, spawner: Spawner, on_failure: Callable[[str], None]) -> None:
        self.spec = spec
        size = spec.size or lifecycle.usable_cores()
        max_pending = spec.max_pending if spec.max_pending is not None else max(16, 8 * size)
        self.admission = Admission(spec, spec.kind, size, max_pending)
        initializer = spec.options.get("initializer")
        init = (
            child.init_blob(initializer, tuple(spec.options.get("initargs", ())))
            if (initializer)
            else None
        )
        self._on_failure = on_failure
        self.dispatcher = Dispatcher(
            spec.name, size, spawner, init=init, on_start_failure=self._start_failed
        )
        self.ready: asyncio.Future[wire.Frame | None] = asyncio.get_running_loop().create_future()
        self.dispatcher.start()  # a server's pools start with it: no first-call latency
        if init is None:
            self.ready.set_result(None)
        else:
            self._probing = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        """Run one call so an initializer that raises is known (with its traceback) before
        any worker serves: `ready` holds the INIT_FAILED reply, or None."""
        probe = wire.encode_call(os.getpid, (), {}).frame(wire.CALL)
        call = self.dispatcher.submit(probe, timeout=None, label="the pool's first call")
        try:
            reply = await call.future
        except WorkerCrashed as error:  # died before answering: no traceback to show
            crashed = WorkerCrashed(message_of(error), exitcode=error.exitcode)
            self.ready.set_result(wire.encode_error(crashed).frame(wire.INIT_FAILED))
            return
        if reply.kind == wire.INIT_FAILED:
            self.ready.set_result(reply)
        else:
            reply.close()
            self.ready.set_result(None)

    def _start_failed(self, failure: StartFailure) -> None:
        # The probe's INIT_FAILED reply (with the traceback) settles `ready` just after this.
        self._reporting = asyncio.ensure_future(self._report(failure))

    async def _report(self, failure: StartFailure) -> None:
        reply = None
        with contextlib.suppress(TimeoutError):
            reply = await asyncio.wait_for(asyncio.shield(self.ready), 5.0)
        if reply is not None:
            self._on_failure(failure_text(self.spec.name, copy_reply(reply)))
        else:
            self._on_failure(f"{message_of(failure)}: its processes keep dying as they start")

    def submit(self, frame: wire.Frame, label: str, reply: Reply) -> Call | None:
        """Admit and queue a CALL frame; refusals are answered at once (None returned)."""
        call_id = frame.call_id
        try:
            self.admission.admit()
        except Overloaded as error:
            frame.close()
            reply(wire.encode_error(error).frame(wire.ERROR, call_id))
            return None
        try:
            call = self.dispatcher.submit(frame, timeout=frame.timeout or None, label=label)
        except RuntimeError as error:
            self.admission.release()
            reply(wire.encode_error(WorkerCrashed(str(error))).frame(wire.ERROR, call_id))
            return None
        call.future.add_done_callback(lambda done: self._settle(done, call_id, reply))
        return call

    def _settle(self, done: asyncio.Future[wire.Frame], call_id: int, reply: Reply) -> None:
        self.admission.release()
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            frame = done.result()
            if frame.kind == wire.RESULT:
                self.admission.completed += 1
            else:
                self.admission.failed += 1
            frame.call_id = call_id
            reply(frame)
            return
        if isinstance(error, TaskTimeout):
            self.admission.timed_out += 1
        elif isinstance(error, WorkerCrashed):
            self.admission.crashed += 1
        else:
            self.admission.failed += 1
        reply(wire.encode_error(error).frame(wire.ERROR, call_id))

    def stats(self) -> PoolStats:
        counted = self.admission.stats()
        running = self.dispatcher.stats()
        counted["busy"] = running["busy"]
        counted["queued"] = running["queued"]
        return counted


def failure_text(name: str, reply: wire.Frame) -> str:
    """The failure in an INIT_FAILED reply: a headline, then the initializer's traceback."""
    try:
        wire.decode_reply(reply)
    except BaseException as error:
        return describe_failure(name, error)
    return f"the initializer of pool {name!r} failed"


def copy_reply(frame: wire.Frame) -> wire.Frame:
    """A copy of an in-band reply, for one more reader."""
    return wire.Frame(frame.kind, frame.call_id, bytes(frame.body), [], frame.flags)


def same_declaration(a: PoolSpec, b: PoolSpec) -> bool:
    return (a.kind, a.size, a.max_pending, a.timeout, dict(a.options)) == (
        b.kind,
        b.size,
        b.max_pending,
        b.timeout,
        dict(b.options),
    )
