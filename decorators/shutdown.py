"""The order of a graceful stop: first drain the background jobs, then close the pools.

It joins the runner's lifecycle only when this process first uses a pool or starts a job, so
a process that never offloads anything registers no shutdown hook.
"""

from __future__ import annotations

import time

from tornado_run.runner import lifecycle

from . import firstuse, jobs
from .pools import registry


async def graceful_stop(timeout: float) -> None:
    """Shutdown hook: wait for background jobs, then close pools, within `timeout` seconds.

    A tenth of the time (at most 1 s) is kept for closing the pools.
    """
    deadline = time.monotonic() + timeout
    await jobs.drain(timeout - min(1.0, timeout / 10))
    await registry.aclose(max(0.0, deadline - time.monotonic()))


def hook_in_at_first_use() -> None:
    """Register `graceful_stop` with the runner's lifecycle when this process first uses a
    pool or starts a background job (at once if it already has)."""
    firstuse.subscribe(lambda: lifecycle.add_shutdown_hook(graceful_stop))
