"""The pool registry: named pool declarations, created lazily in the process that uses them.

Nothing here starts a thread or a process at import. A child of `os.fork()` forgets every pool
its parent had and builds its own on first use, so an app may touch pools before the runner
forks its workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from tornado_run.runner import lifecycle

from .. import firstuse
from . import config, forksafety
from .api import Pool, PoolFactory, PoolSpec, PoolStats
from .executor import ExecutorPool
from .process import ProcessPool
from .thread import ThreadPool
from .tier.client import TierPool
from .tier.protocol import describe_failure

log = logging.getLogger("tornado_run.pools")


def _dask_factory(spec: PoolSpec) -> Pool:
    from .dask import create_pool  # optional kind: imported on use

    pool: Pool = create_pool(spec)
    return pool


def _check_dask(spec: PoolSpec) -> None:
    from .dask_options import check_spec  # validates without importing distributed

    check_spec(spec)


_kinds: dict[str, PoolFactory] = {
    "thread": ThreadPool,
    "process": ProcessPool,
    "dask": _dask_factory,
}
_checks: dict[str, Callable[[PoolSpec], None]] = {"dask": _check_dask}
_specs: dict[str, PoolSpec] = {}
_live: dict[str, Pool] = {}
_adapters: dict[int, ExecutorPool] = {}
_lock = threading.Lock()
_state = {"loaded": False, "hooked": False}


def register_kind(
    kind: str, factory: PoolFactory, *, check: Callable[[PoolSpec], None] | None = None
) -> None:
    """Make `kind` usable in `configure(kind=...)` and `[pools.NAME]` tables; `factory`
    receives a validated `PoolSpec` and returns a `Pool` (it must not start anything yet).
    `check`, if given, validates the kind's own options when a pool is declared and raises
    `ConfigurationError`, so a bad declaration fails at start rather than on the first call."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"pool kind {kind!r}: expected a non-empty string")
    _kinds[kind] = factory
    if check is not None:
        _checks[kind] = check


def configure(
    name: str,
    kind: str = "thread",
    size: int | str | None = None,
    max_pending: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> PoolSpec:
    """Declare (or redeclare) pool `name`. `size` is an integer >= 1 or "auto"; `max_pending`
    bounds the calls waiting for a free worker; `timeout` is the default per-call limit in
    seconds. Raises `ConfigurationError` (a `ValueError`) naming any bad value."""
    _load()
    spec = config.make_spec(name, kind, size, max_pending, timeout, options, _kinds)
    _install(spec)
    return spec


def _install(spec: PoolSpec) -> None:
    check = _checks.get(spec.kind)
    if check is not None:
        check(spec)
    with _lock:
        _specs[spec.name] = spec
        old = _live.pop(spec.name, None)
    if old is not None:
        _close_quietly(old, wait=False)


def _load() -> None:
    """Declare the built-in pools and the runner's `[pools]` tables, once per process."""
    if _state["loaded"]:
        return
    _state["loaded"] = True
    for builtin in ("thread", "process"):
        _specs.setdefault(builtin, PoolSpec(name=builtin, kind=builtin))
    for spec in config.specs_from_table(lifecycle.pools_config(), _kinds):
        _install(spec)


def names() -> list[str]:
    """Names of the declared pools."""
    _load()
    return sorted(_specs)


def declared(name: str) -> PoolSpec | None:
    """The declaration of `name`, or None while it is not declared."""
    _load()
    return _specs.get(name)


def spec_of(name: str) -> PoolSpec:
    """The declaration of `name`; `ConfigurationError` listing the declared pools if unknown."""
    _load()
    try:
        return _specs[name]
    except KeyError:
        raise lifecycle.ConfigurationError(
            f"pool {name!r} is not declared (declared pools: {', '.join(names())}); "
            "declare it with pools.configure() or a [pools.NAME] table"
        ) from None


def get(name: str) -> Pool:
    """The live pool `name` of this process, created on first use."""
    pool = _live.get(name)
    if pool is not None:
        return pool
    spec = spec_of(name)
    with _lock:
        pool = _live.get(name)
        if pool is None:
            pool = _live[name] = _create(spec)
    _hook_into_lifecycle()
    return pool


def _create(spec: PoolSpec) -> Pool:
    """Under tornado-run a process-kind pool is the host-wide CPU tier's, else the kind's."""
    address = lifecycle.cpu_tier_address()
    if address is not None and spec.kind == "process":
        return TierPool(spec, address)
    return _kinds[spec.kind](spec)


async def declare_to_tier() -> None:
    """Boot hook of a web worker under tornado-run: have the CPU tier start the process-kind
    pools declared so far with an initializer (the others start at their first call); one
    whose initializer raises stops the boot with its traceback."""
    if lifecycle.cpu_tier_address() is None:
        return
    for name in names():
        spec = _specs[name]
        if spec.kind != "process" or not spec.options.get("initializer"):
            continue
        pool = get(name)
        if isinstance(pool, TierPool):
            try:
                await pool.declare()
            except Exception as error:
                raise lifecycle.BootFailed(describe_failure(name, error)) from None


def for_executor(executor: Executor) -> Pool:
    """A pool adapter over a caller-owned `concurrent.futures.Executor`."""
    adapter = _adapters.get(id(executor))
    if adapter is None or adapter.executor is not executor:
        adapter = _adapters[id(executor)] = ExecutorPool(executor)
    return adapter


def stats() -> dict[str, PoolStats]:
    """Counters of every pool this process has used: size, busy, queued, completed, failed,
    timed_out, crashed, abandoned (threads) and shed (calls refused as `Overloaded`)."""
    current: dict[str, PoolStats] = {name: pool.stats() for name, pool in list(_live.items())}
    for adapter in list(_adapters.values()):
        current[adapter.spec.name] = adapter.stats()
    return current


def _published_stats() -> dict[str, PoolStats]:
    """What this process publishes to the master: not the CPU tier's pools, which the
    master shows once for the host."""
    return {
        name: figures
        for name, figures in stats().items()
        if not getattr(_live.get(name), "host_wide", False)
    }


def shutdown(wait: bool = True, timeout: float = 30.0) -> None:
    """Close every pool of this process (queued calls still run); with `wait`, block until
    they finish or `timeout` seconds pass. Pools used again afterwards start afresh."""
    with _lock:
        closing = list(_live.values())
        _live.clear()
    deadline = time.monotonic() + timeout
    for pool in closing:
        _close_quietly(pool, wait=wait, timeout=max(0.0, deadline - time.monotonic()))


async def aclose(timeout: float) -> None:
    """Close every pool within `timeout` seconds without blocking the event loop."""
    with _lock:
        closing = list(_live.values())
        _live.clear()
    if closing:
        await asyncio.gather(*(pool.aclose(timeout) for pool in closing), return_exceptions=True)


def _close_quietly(pool: Pool, *, wait: bool, timeout: float = 30.0) -> None:
    """Close `pool`, logging failures; without `wait` the closing happens in a thread."""

    def close() -> None:
        try:
            closer = getattr(pool, "close", None)
            if closer is not None:
                closer(True, timeout)
            else:  # kinds that only implement the async contract
                asyncio.run(pool.aclose(timeout))
        except Exception:
            log.exception("closing pool %r failed", pool.spec.name)

    if wait:
        close()
    else:
        threading.Thread(target=close, name=f"close-pool-{pool.spec.name}", daemon=True).start()


def _hook_into_lifecycle() -> None:
    if _state["hooked"]:
        return
    _state["hooked"] = True
    firstuse.mark_used()
    lifecycle.add_stats_provider("pools", _published_stats)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's may have been held by a thread that is gone
    _live.clear()
    _adapters.clear()
    forksafety.forget_inherited_forkserver()
    forksafety.forget_inherited_children()


os.register_at_fork(after_in_child=_after_fork_in_child)
lifecycle.add_boot_hook(declare_to_tier)
