"""A drop-in for `tornado.concurrent.run_on_executor` that also accepts a pool name."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, overload

from . import pools

F = TypeVar("F", bound=Callable[..., Any])


@overload
def run_on_executor(fn: F, /) -> Callable[..., asyncio.Future[Any]]: ...


@overload
def run_on_executor(
    *, executor: str = "executor", pool: str | None = None
) -> Callable[[F], Callable[..., asyncio.Future[Any]]]: ...


def run_on_executor(*args: Any, **kwargs: Any) -> Any:
    """Run a method in `self.executor` (or the attribute named by `executor=`) and return a
    Future that can be awaited or yielded, like Tornado's decorator.

    `executor=` may also name a declared pool when `self` has no such attribute, and `pool=`
    names one explicitly; pool calls get the pool's timeouts and backpressure. A pool may be
    declared after decoration: a name still undeclared at a call fails it with
    `ConfigurationError` naming the declared pools.
    """
    if args and kwargs:
        raise ValueError("run_on_executor: pass either the method or keyword arguments, not both")
    unknown = set(kwargs) - {"executor", "pool"}
    if unknown:
        raise TypeError(f"run_on_executor: unknown argument(s) {sorted(unknown)}")
    if len(args) > 1:
        raise ValueError(f"run_on_executor: expected 1 positional argument, got {len(args)}")
    attribute: str = kwargs.get("executor", "executor")
    pool: str | None = kwargs.get("pool")
    if args:
        return _decorate(args[0], attribute, pool)
    return lambda fn: _decorate(fn, attribute, pool)


def _decorate(
    fn: Callable[..., Any], attribute: str, pool: str | None
) -> Callable[..., asyncio.Future[Any]]:
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        name = pool
        if name is None:
            target = getattr(self, attribute, None)
            if isinstance(target, Executor):
                return asyncio.wrap_future(target.submit(fn, self, *args, **kwargs))
            if target is not None or attribute not in pools.names():
                raise AttributeError(
                    f"{type(self).__name__}.{attribute} is {target!r}: @run_on_executor needs "
                    f"an Executor there, or a pool name (declared: {', '.join(pools.names())})"
                )
            name = attribute
        return asyncio.ensure_future(pools.get(name).run(fn, (self, *args), kwargs, timeout=None))

    return wrapper
