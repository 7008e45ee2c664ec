"""The zygote: a clean single-threaded process that forks pool processes on request.

Its owner talks to it over one control socket in `wire` frames: SPAWN (fork a pool process;
the reply SPAWNED carries its pid and, as an fd, the owner's end of a socketpair to it), KILL
(SIGKILL a pool process that is not yet reaped, so a reused pid is never hit) and, unasked,
EXITED (a pool process was reaped: pid and exit code, negative for a signal). On EOF of the
control socket (its owner is gone or closed it) it SIGKILLs its pool processes and exits; its
parent's death SIGKILLs it, and that kills its pool processes in turn.

`Zygote` is the owner's side (the `Spawner` a `Dispatcher` uses). `Zygote.start("forkserver")`
starts it through multiprocessing's forkserver, which imports the caller's `__main__` the way
process pools always have (functions defined in a script unpickle in the pool processes);
`Zygote.start("fork")` forks it from the calling process (the CPU tier's broker, before it
starts its event loop, so pool processes share the app it imported copy-on-write).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Protocol

from tornado_run.runner import lifecycle

from .. import pickling
from . import child, wire

_PID = struct.Struct("<I")
_EXIT = struct.Struct("<Ii")
_HELLO_TIMEOUT = 120.0  # seconds for a forkserver-started zygote to import __main__


class ZygoteGone(Exception):
    """The zygote died, or never came up (for instance a script without a main guard)."""


@dataclass
class ChildHandle:
    """A pool process: its pid, the owner's end of its socket (non-blocking) and a future
    for its exit code (negative: killed by that signal; None: unknown, the zygote is gone)."""

    pid: int
    sock: socket.socket
    exited: asyncio.Future[int | None]


class Spawner(Protocol):
    """What a `Dispatcher` needs to get pool processes. All methods run on the loop."""

    async def spawn(self, pool: str, index: int, init: bytes | None) -> ChildHandle:
        """Fork a pool process that runs `init` (see `child.init_blob`) before its first call.
        Raises `ZygoteGone` when it cannot."""
        ...

    def kill(self, pid: int) -> None:
        """SIGKILL the pool process `pid` if it is still running."""
        ...


class Zygote:
    """The owner's side of a zygote process; implements `Spawner`.

    `start()` blocks until the zygote is up. `spawn`/`kill` run on one asyncio loop (the first
    one that spawns); `close()` may run anywhere and kills every pool process it forked.
    """

    def __init__(self, control: socket.socket, pid: int, process: Any = None) -> None:
        self.pid = pid
        self._control = control
        self._process = process  # the multiprocessing.Process, in forkserver mode
        self._reader = wire.FrameReader()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[ChildHandle]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._requests = 0
        self._closed = False

    @classmethod
    def start(cls, mode: Literal["forkserver", "fork"] = "forkserver") -> Zygote:
        """Start a zygote and wait until it serves; `ZygoteGone` if it dies first."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        process: Any = None
        try:
            if mode == "fork":
                pid = os.fork()
                if pid == 0:
                    ours.close()
                    main(theirs)
            else:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(
                    [
                        "tornado_run.decorators.pools.forkserver_group",
                        "tornado_run.decorators.pools.offload.zygote",
                    ]
                )
                process = context.Process(
                    target=main, args=(theirs,), name="tornado-run-zygote", daemon=True
                )
                process.start()
                pid = process.pid
        finally:
            theirs.close()
        zygote = cls(ours, pid, process)
        zygote._wait_for_hello()
        return zygote

    def _wait_for_hello(self) -> None:
        self._control.settimeout(_HELLO_TIMEOUT)
        try:
            while True:
                if not wire.receive(self._control, self._reader):
                    raise ZygoteGone("the pool's process server exited while starting")
                frames = self._reader.frames()
                if frames and frames[0].kind == wire.HELLO:
                    break
        except (OSError, wire.WireError) as error:
            self.close()
            raise ZygoteGone(f"the pool's process server did not start: {error}") from None
        except ZygoteGone:
            self.close()
            raise
        self._control.setblocking(False)

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self._control.fileno(), self._readable)
        elif self._loop is not loop:
            raise RuntimeError("a zygote serves one event loop")

    async def spawn(self, pool: str, index: int, init: bytes | None) -> ChildHandle:
        if self._closed:
            raise ZygoteGone("the pool's process server is closed")
        self._attach()
        assert self._loop is not None
        self._requests += 1
        request = self._requests
        waiter: asyncio.Future[ChildHandle] = self._loop.create_future()
        self._pending[request] = waiter
        body = pickle.dumps((pool, index, init), protocol=5)
        try:
            wire.send_frame(self._control, wire.Frame(wire.SPAWN, request, body))
        except OSError as error:
            self._pending.pop(request, None)
            raise ZygoteGone(f"the pool's process server is gone: {error}") from None
        return await waiter

    def kill(self, pid: int) -> None:
        if self._closed:
            return
        with contextlib.suppress(OSError):
            wire.send_frame(self._control, wire.Frame(wire.KILL, 0, _PID.pack(pid)))

    def _readable(self) -> None:
        try:
            alive = wire.receive(self._control, self._reader)
        except BlockingIOError:
            return
        except (OSError, wire.WireError):
            alive = False
        for frame in self._reader.frames():
            self._handle(frame)
        if not alive:
            self._gone()

    def _handle(self, frame: wire.Frame) -> None:
        assert self._loop is not None
        if frame.kind == wire.SPAWNED and frame.fds:
            (pid,) = _PID.unpack(frame.body)
            sock = socket.socket(fileno=frame.fds.pop(0))
            sock.setblocking(False)
            exited: asyncio.Future[int | None] = self._loop.create_future()
            self._exits[pid] = exited
            waiter = self._pending.pop(frame.call_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(ChildHandle(pid, sock, exited))
            else:
                sock.close()
                self.kill(pid)
        elif frame.kind == wire.EXITED:
            pid, code = _EXIT.unpack(frame.body)
            future = self._exits.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(code)
        frame.close()

    def _gone(self) -> None:
        """The zygote died: nothing more can be spawned, exit codes are unknown."""
        if self._loop is not None and not self._closed:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(self._control.fileno())
        self._closed = True
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(ZygoteGone("the pool's process server died"))
        for future in self._exits.values():
            if not future.done():
                future.set_result(None)
        self._pending.clear()
        self._exits.clear()

    @property
    def alive(self) -> bool:
        return not self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote (it SIGKILLs its pool processes) and wait up to `timeout` seconds
        for it to exit. Safe to call twice, from any thread once its loop has stopped."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed() and not self._closed:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_reader(self._control.fileno())
        self._closed = True
        self._control.close()
        self._reader.close()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.exitcode is None:
                self._process.kill()
                self._process.join(1.0)
            with contextlib.suppress(ValueError):
                self._process.close()
            self._process = None
        elif self.pid:
            _reap(self.pid, timeout)
        for future in self._exits.values():
            if not future.done() and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(_settle_none, future)
        self._exits.clear()


def _settle_none(future: asyncio.Future[int | None]) -> None:
    if not future.done():
        future.set_result(None)


def _reap(pid: int, timeout: float) -> None:
    """Wait for our forked zygote, SIGKILLing it after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# --- the zygote process ----------------------------------------------------------------------


def main(control: socket.socket) -> NoReturn:
    """The zygote process: serve SPAWN and KILL frames until EOF; never returns."""
    try:
        _serve(control)
    finally:
        os._exit(0)


def _serve(control: socket.socket) -> None:
    parent = os.getppid()
    lifecycle.set_parent_death_signal(signal.SIGKILL)
    pickling.release_forkserver()
    if os.getppid() != parent or parent == 1:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child.set_title("tornado-run: cpu zygote")
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    control.setblocking(True)
    children: set[int] = set()
    wire.send_frame(control, wire.Frame(wire.HELLO))
    reader = wire.FrameReader()
    poller = select.poll()
    poller.register(control.fileno(), select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    try:
        while True:
            for fd, _event in poller.poll():
                if fd == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 512)
                    _reap_children(control, children)
                    continue
                if not wire.receive(control, reader):
                    return
                for frame in reader.frames():
                    _obey(frame, control, children, (wake_read, wake_write))
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _obey(
    frame: wire.Frame, control: socket.socket, children: set[int], wake: tuple[int, int]
) -> None:
    frame.close()
    if frame.kind == wire.KILL:
        (pid,) = _PID.unpack(frame.body)
        if pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    elif frame.kind == wire.SPAWN:
        pool, index, init = pickle.loads(frame.body)
        pid, ours = _fork_child(control, pool, index, init, wake)
        children.add(pid)
        wire.send_frame(control, wire.Frame(wire.SPAWNED, frame.call_id, _PID.pack(pid), [ours]))


def _fork_child(
    control: socket.socket, pool: str, index: int, init: bytes | None, wake: tuple[int, int]
) -> tuple[int, int]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in wake:
                os.close(fd)
            control.close()
            ours.close()
        finally:
            child.serve(theirs, pool, index, init, zygote)
    theirs.close()
    return pid, ours.detach()


def _reap_children(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        wire.send_frame(control, wire.Frame(wire.EXITED, 0, _EXIT.pack(pid, code)))
