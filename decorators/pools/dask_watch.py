"""Noticing a dask scheduler that stopped answering, while calls wait on it.

A scheduler host cut off the network (or a scheduler process that hangs) closes no
connection: the client's calls would wait until the kernel gives up on the TCP connection,
which dask sets to 30 s and never allows under 11 s. So while calls are in flight, the pool
asks the scheduler for a sign of life every half connect timeout, and gives each question the
other half. A scheduler that does not answer is declared lost: the client's connection is
aborted, dask fails the waiting calls as "scheduler-connection-lost" and starts reconnecting
on its own, so the pool recovers when the scheduler answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("tornado_run.decorators.dask")


class SchedulerWatch:
    """Probes one client's scheduler while `busy()` is true; see the module docstring."""

    def __init__(self, client: Client, connect_timeout: float, busy: Callable[[], bool]) -> None:
        self.client = client
        self.interval = connect_timeout / 2
        self.busy = busy
        self.lost_reason: str | None = None
        self._dropped: object = None  # the scheduler connection this watch aborted
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start probing unless a probe loop already runs. After a loss, probing resumes once
        the client has a new scheduler connection (dask re-dialed it)."""
        if self.lost_reason is not None:
            if self.client.scheduler_comm in (None, self._dropped):
                return
            self.lost_reason = self._dropped = None
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _watch(self) -> None:
        while self.busy() and self.client.status == "running":
            await asyncio.sleep(self.interval)
            if not self.busy() or self.client.status != "running":
                return
            if not await self._answers() and self.client.status == "running":
                self._declare_lost()
                return

    async def _answers(self) -> bool:
        scheduler = self.client.scheduler
        if scheduler is None:
            return False
        try:
            await asyncio.wait_for(scheduler.identity(n_workers=0), self.interval)
        except Exception as exc:  # a refused, reset or silent connection alike
            log.debug("dask scheduler probe failed: %r", exc)
            return False
        return True

    def _declare_lost(self) -> None:
        self.lost_reason = f"no answer within {self.interval:g} s"
        address = getattr(self.client.scheduler, "address", "?")
        log.warning("dask scheduler %s gave %s: dropping its connection", address, self.lost_reason)
        self._dropped = self.client.scheduler_comm
        comm = getattr(self._dropped, "comm", None)
        with contextlib.suppress(Exception):
            if comm is not None:
                comm.abort()
