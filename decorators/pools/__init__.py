"""Pools: named thread, process, executor and dask pools that `@unblock` runs calls in.

`pools.configure(...)` declares a pool, `pools.stats()` reports every pool this process has
used, `pools.shutdown()` closes them; one module per pool kind sits beside the registry.
"""

from .api import Pool, PoolFactory, PoolSpec, PoolStats
from .registry import (
    aclose,
    configure,
    declared,
    for_executor,
    get,
    names,
    register_kind,
    shutdown,
    spec_of,
    stats,
)

__all__ = [
    "Pool",
    "PoolFactory",
    "PoolSpec",
    "PoolStats",
    "aclose",
    "configure",
    "declared",
    "for_executor",
    "get",
    "names",
    "register_kind",
    "shutdown",
    "spec_of",
    "stats",
]
