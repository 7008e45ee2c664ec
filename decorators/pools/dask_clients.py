"""Letting go of a `distributed.Client` without waiting on a scheduler that may be gone:
cancel and close with a deadline, or abandon a client whose event loop is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger("tornado_run.decorators.dask")


def abandon(client: Client) -> None:
    """Let go of a client whose event loop is gone (or of a parent's, after fork): nothing can
    await its close any more, so drop its scheduler connection now and mark it closed, which
    keeps its finalizer from trying to close it on a dead loop."""
    comm = getattr(client.scheduler_comm, "comm", None)
    with contextlib.suppress(Exception):
        if comm is not None:
            comm.abort()
    client.status = "closed"


async def cancel_quietly(
    client: Client, futures: list[Future[Any]], timeout: float, reason: str
) -> None:
    """Ask the scheduler to cancel `futures`, waiting at most `timeout` s; logs, never raises."""
    try:
        cancelling = client.cancel(futures, reason=reason)  # type: ignore[no-untyped-call]
        await asyncio.wait_for(cancelling, timeout)
    except Exception as exc:  # the scheduler may be gone; nothing left to cancel then
        log.debug("cancelling dask futures failed: %r", exc)


async def close_quietly(client: Client, timeout: float) -> None:
    """Close `client`, waiting at most about `timeout` s; logs, never raises."""
    try:
        await asyncio.wait_for(client.close(timeout=timeout), timeout + 1)  # type: ignore[no-untyped-call]
    except Exception as exc:
        log.warning("closing the dask client failed: %r", exc)
