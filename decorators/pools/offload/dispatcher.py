"""One pool's dispatcher: `size` pool processes, a FIFO queue, one call per process at a time.

It moves OPAQUE frames: a CALL frame in (header fields, body, fds), the pool process's reply
frame out (RESULT, ERROR or INIT_FAILED), never unpickling either, so the same class serves
a process pool in the caller's own process and the CPU tier's broker.

One call per process means a process's death fails only the call it was running: a queued
call never dies with it. A call's timeout counts from `submit` (queueing included); at the
deadline a running call's process is SIGKILLed and replaced. Everything runs on the asyncio
loop that created the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable

from tornado_run.runner import lifecycle

from ...errors import TaskTimeout, WorkerCrashed
from . import wire
from .calls import Call as Call
from .calls import Child, drop_request
from .calls import DispatchStats as DispatchStats
from .calls import StartFailure as StartFailure
from .zygote import ChildHandle, Spawner, ZygoteGone

_EXIT_WAIT = 2.0  # seconds to wait for a dead process's exit code before reporting without
_EARLY = 2.0  # a process that dies this soon after its start, having answered nothing, ...
_CRASH_LOOP = 3  # ... this many times in a row is a crash loop: stop respawning


class Dispatcher:
    """See the module docstring. Create it inside the running loop it will use.

    `init` is `child.init_blob(initializer, initargs)` or None. `on_start_failure`, if given,
    hears of each crash loop (the processes die at start, e.g. the initializer raised).
    """

    def __init__(
        self,
        pool: str,
        size: int,
        spawner: Spawner,
        *,
        init: bytes | None = None,
        on_start_failure: Callable[[StartFailure], None] | None = None,
    ) -> None:
        self.pool = pool
        self.size = size
        self._spawner = spawner
        self._init = init
        self._on_start_failure = on_start_failure
        self._loop = asyncio.get_running_loop()
        self._children: list[Child] = []
        self._idle: list[Child] = []  # the most recently used last: it is taken first
        self._queue: deque[Call] = deque()
        self._busy = 0
        self._spawned = 0
        self._early_deaths = 0
        self._broken: StartFailure | None = None
        self._closed = False
        self._next_id = 0
        self._spawning: set[asyncio.Task[None]] = set()

    # --- public API --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pool processes now instead of at the first `submit`."""
        self._fill()

    def submit(self, request: wire.Frame, *, timeout: float | None = None, label: str = "") -> Call:
        """Queue a CALL frame (the dispatcher owns its fds from here on). `timeout` (seconds,
        None or <= 0: none; default: the frame's own `timeout` field) counts from now.
        `label` names the call in error messages, e.g. "app.fib()". Raises RuntimeError once
        the dispatcher is closed."""
        if self._closed:
            request.close()
            raise RuntimeError(f"pool {self.pool!r} is shut down")
        call = Call(request, self._loop.create_future(), label or "the call")
        limit = request.timeout if timeout is None else timeout
        if limit and limit > 0:
            call.timeout = limit
            call.timer = self._loop.call_later(limit, self._expire, call)
        if self._broken is not None:
            self._broken = None
            self._early_deaths = 0
        self._queue.append(call)
        self._fill()
        self._pump()
        return call

    def cancel(self, call: Call, *, kill: bool = False) -> bool:
        """Withdraw `call`: a queued call is removed and never runs; a running one is killed
        (its process replaced) only with `kill`, else it runs on and its reply is dropped.
        Returns True when the call will not run on (removed or killed)."""
        if call.timer is not None:
            call.timer.cancel()
        if not call.future.done():
            call.future.cancel()
        child = call.child
        if child is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(call)
            drop_request(call)
            return True
        if kill and child.call is call:
            self._kill(child)
            return True
        return False

    def replace_all(self) -> None:
        """Replace every pool process: idle ones now, busy ones once their call ends."""
        for child in list(self._children):
            if child.call is None and child.handle is not None:
                self._retire(child)
            else:
                child.retire = True
        self._fill()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for queued and running calls to end; True if they did."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not (self._queue or self._busy)

    def close(self) -> None:
        """Fail queued and running calls with `WorkerCrashed`, stop every pool process."""
        self._closed = True
        while self._queue:
            call = self._queue.popleft()
            self._fail(call, WorkerCrashed(f"pool {self.pool!r} shut down before the call ran"))
        for child in list(self._children):
            if child.call is not None:
                failure = WorkerCrashed(f"pool {self.pool!r} shut down before the call finished")
                self._fail(child.call, failure)
            self._kill(child, replace=False)
        self._children.clear()
        self._idle.clear()

    def stats(self) -> DispatchStats:
        alive = sum(1 for child in self._children if child.handle is not None)
        return DispatchStats(
            size=self.size,
            alive=alive,
            busy=self._busy,
            queued=len(self._queue),
            spawned=self._spawned,
        )

    # --- processes ---------------------------------------------------------------------------

    def _fill(self) -> None:
        """Start processes until the pool has `size` (unless closed or in a crash loop)."""
        if len(self._children) >= self.size or self._closed or self._broken is not None:
            return
        used = {child.index for child in self._children}
        free = (index for index in range(len(self._children) + self.size) if index not in used)
        while len(self._children) < self.size:
            child = Child(next(free))
            self._children.append(child)
            task = self._loop.create_task(self._spawn(child))
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

    async def _spawn(self, child: Child) -> None:
        try:
            handle = await self._spawner.spawn(self.pool, child.index, self._init)
        except (ZygoteGone, OSError, RuntimeError) as error:
            self._forget(child)
            self._crash_loop(StartFailure(f"pool {self.pool!r} cannot start processes: {error}"))
            return
        self._spawned += 1
        if self._closed or child not in self._children:
            handle.sock.close()
            self._spawner.kill(handle.pid)
            return
        child.handle = handle
        child.reader = wire.FrameReader()
        child.started = time.monotonic()
        self._loop.add_reader(handle.sock.fileno(), self._readable, child)
        self._idle.append(child)
        self._pump()

    def _forget(self, child: Child) -> None:
        """Drop `child` from the books and release its socket (its process is dead or dying)."""
        with contextlib.suppress(ValueError):
            self._children.remove(child)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        handle, child.handle = child.handle, None
        if handle is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(handle.sock.fileno())
                self._loop.remove_writer(handle.sock.fileno())
            handle.sock.close()
        if child.reader is not None:
            child.reader.close()
        if child.outbox is not None:
            for fd in child.outbox[1]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            child.outbox = None
        if child.call is not None:
            child.call = None
            self._busy -= 1

    def _kill(self, child: Child, *, replace: bool = True) -> None:
        handle = child.handle
        self._forget(child)
        if handle is not None:
            self._spawner.kill(handle.pid)
        if replace:
            self._fill()

    def _retire(self, child: Child) -> None:
        """Stop an idle process gracefully (EOF ends its loop) and start its replacement."""
        self._forget(child)
        self._fill()

    # --- calls -------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand queued calls to idle processes."""
        while self._queue and self._idle:
            # Last in, first out: a process that just answered is still awake and warm in
            # cache; one at a time, calls then stay on one process instead of waking each.
            child = self._idle.pop()
            call = self._queue.popleft()
            if call.future.done():  # cancelled without `cancel()`
                drop_request(call)
                self._idle.append(child)
                continue
            if not self._send(child, call):
                self._queue.appendleft(call)  # the process was dead before it got the call

    def _send(self, child: Child, call: Call) -> bool:
        assert child.handle is not None and call.request is not None
        request = call.request
        self._next_id += 1
        request.call_id = child.call_id = self._next_id
        parts = wire.frame_parts(request)
        sock = child.handle.sock
        try:
            sent = sock.sendmsg(parts, wire.ancillary(request.fds))
        except BlockingIOError:
            sent = -1
        except OSError:
            self._died(child)
            return False
        call.request = None
        call.child = child
        child.call = call
        self._busy += 1
        if sent < 0:
            child.outbox = (b"".join(parts), request.fds)
            request.fds = []
        else:
            request.close()
            if sent < wire.HEADER.size + len(parts[1]) + len(request.body):
                child.outbox = (b"".join(parts)[sent:], [])
        if child.outbox is not None:
            self._loop.add_writer(sock.fileno(), self._flush, child)
        return True

    def _flush(self, child: Child) -> None:
        if child.outbox is None or child.handle is None:
            return
        data, fds = child.outbox
        try:
            sent = child.handle.sock.sendmsg([data], wire.ancillary(fds))
        except BlockingIOError:
            return
        except OSError:
            self._died(child)
            return
        for fd in fds:
            os.close(fd)
        child.outbox = (data[sent:], []) if sent < len(data) else None
        if child.outbox is None:
            self._loop.remove_writer(child.handle.sock.fileno())

    def _readable(self, child: Child) -> None:
        handle, reader = child.handle, child.reader
        if handle is None or reader is None:
            return
        try:
            alive = wire.receive(handle.sock, reader)
        except BlockingIOError:
            return
        except (OSError, wire.WireError):
            alive = False
        try:
            frames = reader.frames()
        except wire.WireError:
            frames, alive = [], False
        for frame in frames:
            self._reply(child, frame)
        if not alive and child.handle is handle:
            self._died(child)

    def _reply(self, child: Child, frame: wire.Frame) -> None:
        call = child.call
        if frame.kind == wire.INIT_FAILED:
            self._init_failed(child, frame)
            return
        if call is None or frame.call_id != child.call_id:
            frame.close()
            return
        child.call = None
        child.answered = True
        self._busy -= 1
        self._early_deaths = 0
        if call.timer is not None:
            call.timer.cancel()
        if call.future.done():
            frame.close()  # withdrawn or timed out meanwhile
        else:
            call.future.set_result(frame)
        if child.retire:
            self._retire(child)
        else:
            self._idle.append(child)
            self._pump()

    def _init_failed(self, child: Child, frame: wire.Frame) -> None:
        """The initializer raised: the call on this process (or else the oldest queued one)
        gets the INIT_FAILED frame; the rest of the queue fails with `StartFailure`."""
        call = child.call
        self._forget(child)
        if call is None and self._queue:
            call = self._queue.popleft()
        failure = StartFailure(f"the initializer of pool {self.pool!r} raised")
        if call is not None and not call.future.done():
            if call.timer is not None:
                call.timer.cancel()
            drop_request(call)
            call.future.set_result(frame)
        else:
            frame.close()
        self._crash_loop(failure)

    def _died(self, child: Child) -> None:
        """A process's socket closed (it died): fail its call with the exit status, replace it."""
        handle, call = child.handle, child.call
        early = not child.answered and time.monotonic() - child.started < _EARLY
        self._forget(child)
        if call is not None and handle is not None:
            self._report_crash(call, handle)
        if early and call is None:
            self._early_deaths += 1
            if self._early_deaths >= _CRASH_LOOP:
                self._crash_loop(
                    StartFailure(f"the processes of pool {self.pool!r} die as they start")
                )
                return
        self._fill()

    def _crash_loop(self, failure: StartFailure) -> None:
        self._broken = failure
        while self._queue:
            self._fail(self._queue.popleft(), failure)
        if self._on_start_failure is not None:
            self._on_start_failure(failure)

    def _report_crash(self, call: Call, handle: ChildHandle) -> None:
        def report(code: int | None) -> None:
            waiting.cancel()
            self._fail(
                call,
                WorkerCrashed(
                    f"the process running {call.label} died with "
                    f"{lifecycle.describe_exitcode(code)}",
                    exitcode=code,
                ),
            )

        waiting = self._loop.call_later(_EXIT_WAIT, report, None)
        handle.exited.add_done_callback(lambda done: report(done.result()))

    def _expire(self, call: Call) -> None:
        call.timer = None
        if call.future.done():
            return
        child = call.child
        if child is None:
            with contextlib.suppress(ValueError):
                self._queue.remove(call)
            drop_request(call)
            message = f"{call.label} timed out after {call.timeout:g}s before it started"
        else:
            if child.call is call:
                self._kill(child)
            message = f"{call.label} timed out after {call.timeout:g}s; its process was killed"
        call.future.set_exception(TaskTimeout(message, timeout=call.timeout))

    def _fail(self, call: Call, error: BaseException) -> None:
        if call.timer is not None:
            call.timer.cancel()
        drop_request(call)
        if not call.future.done():
            call.future.set_exception(error)
