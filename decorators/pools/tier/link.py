"""One web worker's connection to the broker, on the broker's loop.

Frames in: DECLARE (start a pool, answered DECLARED or with the initializer's failure), CALL
(relayed to the pool's dispatcher), CANCEL (withdraw a call; kill its process if asked).
Frames out: the replies, written without blocking (a partial write waits for the socket to
be writable). When the worker closes the connection, or sends what is not a frame, its queued
calls are withdrawn and the results of its running calls dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Protocol

from ..api import PoolSpec
from ..offload import wire
from ..offload.dispatcher import Call
from . import protocol
from .outbox import Outbox
from .pools import HostPool

log = logging.getLogger("tornado_run.tier")


class Host(Protocol):
    """What a link needs of its broker."""

    def pool(self, name: str) -> HostPool | None: ...
    async def declare(self, spec: PoolSpec) -> wire.Frame | None: ...
    def link_closed(self, link: Link) -> None: ...


class Link:
    """A worker's connection: reads its frames, runs them, writes the replies."""

    def __init__(self, sock: socket.socket, broker: Host) -> None:
        self.sock = sock
        self.broker = broker
        self.loop = asyncio.get_running_loop()
        self.reader = wire.FrameReader()
        self.calls: dict[int, tuple[HostPool, Call]] = {}
        self.outbox = Outbox(self.loop, sock, lambda error: self.close())
        self.closed = False
        self._declaring: set[asyncio.Future[None]] = set()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._readable)

    # ---- reading ----------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            alive = wire.receive(self.sock, self.reader)
            frames = self.reader.frames()
        except BlockingIOError:
            return
        except (OSError, wire.WireError, UnicodeDecodeError) as error:
            log.warning("cpu tier: dropping a worker connection: %s", error)
            self.close()
            return
        for frame in frames:
            self._handle(frame)
        if not alive:
            self.close()

    def _handle(self, frame: wire.Frame) -> None:
        if frame.kind == wire.CALL:
            self._call(frame)
        elif frame.kind == protocol.CANCEL:
            self._cancel(frame.call_id, kill=bool(frame.flags & protocol.FLAG_KILL))
        elif frame.kind == protocol.DECLARE:
            declaring = asyncio.ensure_future(self._declare(frame))
            self._declaring.add(declaring)
            declaring.add_done_callback(self._declaring.discard)
        else:
            frame.close()

    def _call(self, frame: wire.Frame) -> None:
        name, label = protocol.split_target(frame.pool)
        pool = self.broker.pool(name)
        call_id = frame.call_id
        if pool is None:
            frame.close()
            error = RuntimeError(f"pool {name!r} was not declared to the cpu tier")
            self.send(protocol.error_reply(error, call_id))
            return
        call = pool.submit(frame, label, self._replier(call_id))
        if call is not None:
            self.calls[call_id] = (pool, call)

    def _replier(self, call_id: int) -> protocol.Reply:
        def reply(frame: wire.Frame) -> None:
            self.calls.pop(call_id, None)
            self.send(frame)

        return reply

    def _cancel(self, call_id: int, *, kill: bool) -> None:
        entry = self.calls.pop(call_id, None)
        if entry is not None:
            pool, call = entry
            pool.dispatcher.cancel(call, kill=kill)

    async def _declare(self, frame: wire.Frame) -> None:
        call_id = frame.call_id
        try:
            spec = protocol.read_declaration(frame)
        except Exception as error:
            self.send(protocol.error_reply(ValueError(f"bad pool declaration: {error}"), call_id))
            return
        failure = await self.broker.declare(spec)
        if failure is None:
            self.send(wire.Frame(protocol.DECLARED, call_id, pool=spec.name))
        else:
            failure.call_id = call_id
            self.send(failure)

    # ---- writing ----------------------------------------------------------------------

    def send(self, frame: wire.Frame) -> None:
        """Queue `frame` for the worker (dropped, fds closed, once the link is closed)."""
        self.outbox.put(frame)

    # ---- closing ----------------------------------------------------------------------

    def close(self) -> None:
        """Withdraw queued calls, drop running ones' results, release everything."""
        if self.closed:
            return
        self.closed = True
        for pool, call in list(self.calls.values()):
            pool.dispatcher.cancel(call, kill=False)
        self.calls.clear()
        self.outbox.close()
        with contextlib.suppress(ValueError, RuntimeError):
            self.loop.remove_reader(self.sock.fileno())
        self.reader.close()
        self.sock.close()
        self.broker.link_closed(self)
