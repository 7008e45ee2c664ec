"""What a `Dispatcher` keeps per call and per pool process, and what it reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypedDict

from ...errors import WorkerCrashed
from . import wire
from .zygote import ChildHandle


class DispatchStats(TypedDict):
    """A dispatcher's figures (`Dispatcher.stats()`)."""

    size: int  # processes the pool keeps
    alive: int  # processes up (idle or busy)
    busy: int  # calls running
    queued: int  # calls waiting for a process
    spawned: int  # processes started since creation (replacements included)


class StartFailure(WorkerCrashed):
    """The pool's processes die at start (a crash loop, or the zygote is gone); the
    dispatcher stops respawning until the next `submit`."""

    def __init__(self, message: str, *, exitcode: int | None = None) -> None:
        super().__init__(message, exitcode=exitcode)


class Call:
    """A submitted call. `future` resolves to the reply frame (whose fds the awaiting side
    owns) or fails with `TaskTimeout`, `WorkerCrashed` (or `StartFailure`); it is cancelled
    when the call is withdrawn with `Dispatcher.cancel`."""

    __slots__ = ("child", "future", "label", "request", "timeout", "timer")

    def __init__(self, request: wire.Frame, future: asyncio.Future[wire.Frame], label: str):
        self.request: wire.Frame | None = request
        self.future = future
        self.label = label
        self.timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.child: Child | None = None

    @property
    def running(self) -> bool:
        """True once the call was handed to a pool process."""
        return self.child is not None


@dataclass(eq=False)
class Child:
    """One pool process slot: its handle once spawned, the call it runs, its reader."""

    index: int
    handle: ChildHandle | None = None
    call: Call | None = None
    reader: wire.FrameReader | None = None
    outbox: tuple[bytes, list[int]] | None = None  # unsent rest of a frame, fds not yet sent
    retire: bool = False  # replace once the running call ends
    answered: bool = False  # answered at least one call
    started: float = 0.0
    call_id: int = 0  # id of the frame sent for `call`


def drop_request(call: Call) -> None:
    request, call.request = call.request, None
    if request is not None:
        request.close()
