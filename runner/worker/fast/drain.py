"""The fast server's drain, with the same promises as `DrainingHTTPServer.drain`: requests
in flight are answered with `Connection: close`, so are requests read after the drain
began, idle keep-alive connections are half-closed after a grace period (FIN, then read
to the client's close, so no request in its way gets a reset), and nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..httpserver import IDLE_GRACE

if TYPE_CHECKING:
    from .state import ServedConnection, ServerState

_POLL = 0.05


async def drain_connections(
    state: ServerState, timeout: float, on_progress: Callable[[], None] | None = None
) -> int:
    """Drain every connection of `state` (accepting must have stopped); returns how many
    were still open at the deadline (they are closed)."""
    deadline = time.monotonic() + timeout
    state.draining = True
    connections = state.connections
    idle: list[ServedConnection] = []
    for conn in list(connections):
        if conn.queue:
            for request in conn.queue:
                request.disconnect_on_finish = True
        else:
            idle.append(conn)
    grace = min(deadline, time.monotonic() + IDLE_GRACE)
    await _wait_until(grace, lambda: not any(c in connections for c in idle))
    for conn in idle:
        if conn in connections and conn.idle():
            conn.half_close()
    await _wait_until(deadline, lambda: not connections, on_progress)
    leftover = len(connections)
    for conn in list(connections):
        conn.abort()
    return leftover


async def _wait_until(
    deadline: float, done: Callable[[], bool], on_progress: Callable[[], None] | None = None
) -> None:
    while not done() and time.monotonic() < deadline:
        if on_progress is not None:
            on_progress()
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
