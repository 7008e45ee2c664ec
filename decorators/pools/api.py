"""The contract every pool kind implements, so `@unblock` can drive thread, process and
remote (e.g. dask) pools the same way. A new kind registers a factory with
`pools.register_kind(kind, factory)`; the factory receives a validated `PoolSpec`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class PoolSpec:
    """What `pools.configure()` or a `[pools.NAME]` table declared, already validated."""

    name: str
    kind: str
    size: int | None = None  # None: the kind's default ("auto")
    max_pending: int | None = None  # calls that may wait for a free worker; None: from size
    timeout: float | None = None  # default per-call timeout in seconds; None: no timeout
    options: Mapping[str, Any] = field(default_factory=dict)  # kind-specific, e.g. address


class PoolStats(TypedDict):
    """Counters a pool reports through `pools.stats()`; every kind fills every key."""

    kind: str
    size: int
    busy: int
    queued: int
    completed: int
    failed: int
    timed_out: int
    crashed: int
    abandoned: int
    shed: int


class Pool(Protocol):
    """A per-process pool. All methods are called on the IOLoop thread of this process."""

    spec: PoolSpec

    async def run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timeout: float | None,
    ) -> T:
        """Run `fn(*args, **kwargs)` in the pool and return its result to the awaiting caller.

        `timeout` None means the spec's default. Raises `Overloaded` at once when
        `size + max_pending` calls are already admitted, `TaskTimeout` once `timeout` seconds
        have passed since the call (queueing included), `WorkerCrashed` when the process
        running the call dies; the call's own exception is re-raised as is. When the awaiting
        task is cancelled (client disconnect), a call that has not started must not run.
        """
        ...

    def stats(self) -> PoolStats:
        """Return this pool's counters."""
        ...

    async def aclose(self, timeout: float) -> None:
        """Stop accepting calls, let admitted calls finish for up to `timeout` seconds, then
        release every thread, process or connection the pool owns.

        A kind may also offer a blocking `close(wait: bool, timeout: float)`, which
        `pools.shutdown()` prefers (the built-in kinds do); otherwise it runs `aclose`.
        """
        ...


PoolFactory = Callable[[PoolSpec], Pool]
