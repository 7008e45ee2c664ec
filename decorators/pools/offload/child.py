"""A pool process's main loop: run the pool's initializer once, then read one CALL frame at a
time, run it and send back its RESULT or ERROR frame. It exits on EOF (its dispatcher closed
the socket), and is SIGKILLed by Linux when the zygote that forked it dies."""

from __future__ import annotations

import importlib
import os
import pickle
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, NoReturn

from tornado_run.runner import lifecycle

from .. import pickling
from . import wire

EXIT_INIT_FAILED = 3


def init_blob(initializer: Callable[..., Any] | str | None, initargs: tuple[Any, ...]) -> bytes:
    """Pickle a pool's initializer (a callable or "module:function") and its arguments for
    `serve`; pickled in the caller so an unpicklable initializer fails where it is declared."""
    return pickle.dumps((initializer, tuple(initargs)), protocol=5)


def resolve_initializer(initializer: Callable[..., Any] | str) -> Callable[..., Any]:
    """A "module:function" string becomes the function it names."""
    if callable(initializer):
        return initializer
    module, _, name = initializer.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"initializer {initializer!r} is not callable")
    return target  # type: ignore[no-any-return]


def set_title(title: str) -> None:
    """Name this process in ps/top when setproctitle is installed."""
    try:
        module: Any = importlib.import_module("setproctitle")
    except ImportError:
        return
    module.setproctitle(title)


def serve(sock: socket.socket, pool: str, index: int, init: bytes | None, parent: int) -> NoReturn:
    """Run the pool process on `sock` until EOF; never returns. `parent` is the pid of the
    process that forked this one: its death kills this one."""
    code = 1
    try:
        lifecycle.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the owner, which stops us
        sock.setblocking(True)
        set_title(f"tornado-run: cpu {pool} {index}")
        if init is not None and not _initialize(sock, init):
            os._exit(EXIT_INIT_FAILED)
        _loop(sock)
        code = 0
    finally:
        os._exit(code)


def _initialize(sock: socket.socket, init: bytes) -> bool:
    try:
        initializer, initargs = pickle.loads(init)
        if initializer is not None:
            resolve_initializer(initializer)(*initargs)
    except BaseException as error:
        wire.send_frame(sock, wire.encode_error(error).frame(wire.INIT_FAILED))
        return False
    return True


def _loop(sock: socket.socket) -> None:
    reader = wire.FrameReader()
    spin = False
    while True:
        idle_since = time.perf_counter()
        if not _next(sock, reader, spin):
            return
        # A call that came soon after the last reply predicts another: poll for the next one
        # instead of sleeping. A call that came late turns polling off until one comes soon.
        spin = time.perf_counter() - idle_since < SPIN
        for frame in reader.frames():
            if frame.kind != wire.CALL:
                frame.close()
                continue
            wire.send_frame(sock, run_call(frame))


SPIN = 0.0002  # seconds a pool process polls for its next call before it sleeps


def _next(sock: socket.socket, reader: wire.FrameReader, spin: bool) -> bool:
    """Receive more bytes; False on EOF. With `spin`, poll up to `SPIN` seconds first,
    yielding the core to any other runnable process between polls: waking a sleeping process
    costs more than the whole round trip of a call that finds it awake."""
    if spin:
        deadline = time.perf_counter() + SPIN
        while True:
            try:
                return wire.receive(sock, reader, wait=False)
            except BlockingIOError:
                if time.perf_counter() > deadline:
                    break
                os.sched_yield()
    while (idle := wire.spares.idle_left()) is not None:  # spare memfds: close them when idle
        waiting = select.poll()
        waiting.register(sock, select.POLLIN)
        if waiting.poll(idle * 1000):
            break
        wire.spares.release_idle()
    return wire.receive(sock, reader)


def run_call(frame: wire.Frame) -> wire.Frame:
    """Run one CALL frame and return its reply frame (same call id)."""
    try:
        target, args, kwargs = wire.decode_call(frame)
        fn = pickling.resolve(target)
        value = fn(*args, **kwargs)
    except BaseException as error:
        return wire.encode_error(error).frame(wire.ERROR, frame.call_id)
    try:
        encoded = wire.encode_result(value)
    except Exception as error:
        failure = TypeError(
            f"the result of {pickling.describe(fn)}() cannot be sent back from the process "
            f"pool: {error}; return plain data"
        )
        return wire.encode_error(failure).frame(wire.ERROR, frame.call_id)
    return encoded.frame(wire.RESULT, frame.call_id)
