"""Adapter that lets `@unblock(pool=executor)` use any `concurrent.futures.Executor`.

The executor stays the caller's: it is never shut down here, and its queue is its own, so
calls are not shed. Process executors get calls through the same pickling trampoline as the
"process" pool, so decorated module-level functions work there too.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

from ..errors import TaskTimeout
from . import pickling
from .admission import Admission
from .api import PoolSpec, PoolStats

T = TypeVar("T")
_UNBOUNDED = 2**31


class ExecutorPool:
    """A `api.Pool` over a caller-owned executor (named after its class)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.processes = isinstance(executor, ProcessPoolExecutor)
        name = f"<{type(executor).__name__} {id(executor):#x}>"
        kind = "executor-process" if self.processes else "executor"
        self.spec = PoolSpec(name=name, kind=kind)
        size = int(getattr(executor, "_max_workers", 1) or 1)
        self._admission = Admission(self.spec, kind, size, _UNBOUNDED)

    async def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> T:
        submitted: Future[Any]
        if self.processes:
            submitted = self.executor.submit(pickling.run_packed, pickling.pack(fn, args, kwargs))
        else:
            call = functools.partial(fn, *args, **kwargs)
            submitted = self.executor.submit(contextvars.copy_context().run, call)
        self._admission.admit()  # never refuses (unbounded): it keeps the counters
        try:
            waiting = asyncio.wrap_future(submitted)
            result = await (waiting if timeout is None else asyncio.wait_for(waiting, timeout))
        except TimeoutError:
            self._admission.timed_out += 1
            if not submitted.cancel():
                self._admission.abandoned += 1
            raise TaskTimeout(
                f"{pickling.describe(fn)}() timed out after {timeout:g}s", timeout=timeout
            ) from None
        except asyncio.CancelledError:
            submitted.cancel()
            raise
        except BaseException:
            self._admission.failed += 1
            raise
        finally:
            self._admission.release()
        self._admission.completed += 1
        value: T = pickling.unpack(result) if self.processes else result
        return value

    def stats(self) -> PoolStats:
        return self._admission.stats()

    async def aclose(self, timeout: float) -> None:
        """Nothing to release: the executor belongs to the caller."""
