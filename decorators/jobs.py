"""Fire-and-forget jobs that graceful shutdown waits for.

A job's failure is logged with its traceback and counted; nobody awaits it. At a graceful
stop `shutdown` drains the pending jobs (see `drain`) before it closes the pools.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from tornado_run.runner import lifecycle

from . import firstuse, pools

log = logging.getLogger("tornado_run.background")

_jobs: set[asyncio.Task[Any]] = set()
_counts = {"started": 0, "completed": 0, "failed": 0, "abandoned": 0}


def background(
    fn: Callable[..., Any], *args: Any, pool: str | Executor | None = None, **kwargs: Any
) -> asyncio.Task[Any]:
    """Start `fn(*args, **kwargs)` without waiting for it and return its task.

    A coroutine function (or an `@unblock` function) runs on the event loop; a plain blocking
    function runs in `pool` (default "thread"). Call it from the event loop thread.
    """
    if pool is None and (inspect.iscoroutinefunction(fn) or _is_unblocked(fn)):
        coroutine = fn(*args, **kwargs)
    else:
        target = (
            pools.for_executor(pool) if isinstance(pool, Executor) else pools.get(pool or "thread")
        )
        coroutine = target.run(fn, args, kwargs, timeout=None)
    task = asyncio.get_running_loop().create_task(coroutine, name=f"background {_name(fn)}")
    _jobs.add(task)
    _counts["started"] += 1
    task.add_done_callback(_finished)
    _register()
    return task


def _is_unblocked(fn: Callable[..., Any]) -> bool:
    return getattr(fn, "__unblock_pool__", None) is not None


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _finished(task: asyncio.Task[Any]) -> None:
    _jobs.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is None:
        _counts["completed"] += 1
        return
    _counts["failed"] += 1
    log.error("%s failed", task.get_name(), exc_info=(type(error), error, error.__traceback__))


def stats() -> dict[str, int]:
    """Background jobs: started, completed, failed, abandoned (at shutdown) and pending."""
    return {**_counts, "pending": len(_jobs)}


async def drain(timeout: float) -> None:
    """Wait up to `timeout` seconds for pending jobs; cancel and log the ones still running."""
    pending = [task for task in _jobs if task is not asyncio.current_task()]
    if not pending:
        return
    try:
        await asyncio.wait(pending, timeout=max(timeout, 0.0))
    finally:  # also when the runner cancels this hook at its own deadline
        for task in pending:
            if not task.done():
                _counts["abandoned"] += 1
                log.warning(
                    "abandoning background job %s at the graceful deadline", task.get_name()
                )
                task.cancel()


_registered = {"done": False}


def _register() -> None:
    if _registered["done"]:
        return
    _registered["done"] = True
    firstuse.mark_used()
    lifecycle.add_stats_provider("background", stats)


def _after_fork_in_child() -> None:
    _jobs.clear()  # they belong to the parent's event loop


os.register_at_fork(after_in_child=_after_fork_in_child)
