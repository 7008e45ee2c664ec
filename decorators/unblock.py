"""`@unblock`: run a blocking function in a pool and get its result back on the event loop.

On a `RequestHandler` HTTP verb the return value is written on the loop thread (a generator
streams); anywhere else the function becomes awaitable with its name, docs and signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from tornado.web import RequestHandler
from tornado_run.runner.lifecycle import ConfigurationError

from . import pools, streaming
from .disconnect import DISCONNECTED, until_disconnect
from .errors import Overloaded
from .handler_results import answer_overloaded, write_result
from .pools.api import Pool, PoolSpec

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=RequestHandler)
PoolRef = str | Executor

_VERBS = frozenset(method.lower() for method in RequestHandler.SUPPORTED_METHODS)
_IN_PROCESS_KINDS = frozenset({"thread", "executor"})  # kinds whose calls stay in this process


class Unblocker(Protocol):
    """What `unblock(pool=..., timeout=...)` returns: the decorator itself."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[H, P], Any], /
    ) -> Callable[Concatenate[H, P], Coroutine[Any, Any, Any]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, Coroutine[Any, Any, R]]: ...


# Handler methods are typed as returning Any: a verb's value is written, not returned, and
# Any keeps the override compatible with RequestHandler.get() and friends.
@overload
def unblock(
    fn: Callable[Concatenate[H, P], Any], /
) -> Callable[Concatenate[H, P], Coroutine[Any, Any, Any]]: ...


@overload
def unblock(fn: Callable[P, R], /) -> Callable[P, Coroutine[Any, Any, R]]: ...


@overload
def unblock(
    fn: None = None, /, *, pool: PoolRef = "thread", timeout: float | None = None
) -> Unblocker: ...


def unblock(
    fn: Callable[P, R] | None = None,
    /,
    *,
    pool: PoolRef = "thread",
    timeout: float | None = None,
) -> Any:
    """Run `fn` in `pool` (a pool name or an Executor) with an optional `timeout` in seconds
    (default: the pool's). Used bare (`@unblock`) or with arguments (`@unblock(pool=...)`).

    A pool name may be declared after decoration; the pool is looked up at each call, and a
    name still undeclared then fails that call with `ConfigurationError` naming the declared
    pools. Nothing of the pool is shipped with the function: a pool outside this process
    gets the plain function.

    Raises at decoration: `ConfigurationError` (a ValueError) for a bad timeout; `TypeError`
    for an async function, or for a handler verb or a generator that is not a handler verb on
    a pool outside this process (at decoration if the pool is declared, else at first call).
    """
    if fn is None:
        return lambda function: _decorate(function, pool, timeout)
    return _decorate(fn, pool, timeout)


class _PoolFinder:
    """Finds the pool of one decorated function, at each call, and checks once per
    declaration that this pool can run it. A name needs no declaration until the first call,
    so a module imports where its pools are not declared (a dask scheduler or worker)."""

    def __init__(self, fn: Callable[..., Any], pool: PoolRef, verb: bool, generator: bool) -> None:
        self.fn, self.pool, self.verb, self.generator = fn, pool, verb, generator
        self._checked: PoolSpec | None = None
        if isinstance(pool, Executor):
            _check_placement(fn, pool, isinstance(pool, ProcessPoolExecutor), verb, generator)
        elif not isinstance(pool, str):
            raise TypeError(
                f"@unblock(pool={pool!r}): expected a pool name ({', '.join(pools.names())}) "
                "or a concurrent.futures.Executor"
            )
        else:
            declared = pools.declared(pool)
            if declared is not None:
                self._check(declared)

    def __call__(self) -> Pool:
        if isinstance(self.pool, Executor):
            return pools.for_executor(self.pool)
        live = pools.get(self.pool)
        if live.spec is not self._checked:
            self._check(live.spec)
        return live

    def _check(self, spec: PoolSpec) -> None:
        remote = spec.kind not in _IN_PROCESS_KINDS
        _check_placement(self.fn, self.pool, remote, self.verb, self.generator)
        self._checked = spec


def _check_placement(
    fn: Callable[..., Any], pool: PoolRef, remote: bool, verb: bool, generator: bool
) -> None:
    """Raise `TypeError` when a pool outside this process would get a handler verb or a
    generator, which only run next to their handler."""
    if remote and verb:
        raise TypeError(
            f"@unblock(pool={pool!r}) cannot run the handler method {fn.__qualname__} in "
            "another process (the handler stays here); move the work to a module-level "
            "@unblock(pool=...) function and `await` it from the handler"
        )
    if generator and (remote or not verb):
        raise TypeError(
            f"@unblock on generator {fn.__qualname__}: generators stream only as handler "
            "verbs on a thread pool; return a list instead, or make it a handler verb"
        )


def _check_timeout(fn: Callable[..., Any], timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigurationError(
            f"@unblock(timeout={timeout!r}) on {fn.__qualname__}: expected seconds > 0 or None"
        )


def _is_method(fn: Callable[..., Any]) -> bool:
    parts = fn.__qualname__.split(".")
    params = list(inspect.signature(fn).parameters)
    return len(parts) >= 2 and parts[-2] != "<locals>" and params[:1] == ["self"]


def _decorate(fn: Callable[P, R], pool: PoolRef, timeout: float | None) -> Any:
    if not callable(fn):
        raise TypeError(f"@unblock needs a function, got {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"@unblock on async function {fn.__qualname__}: it already runs on the event loop; "
            "decorate the blocking function it calls instead (@cancel_on_disconnect stops an "
            "async verb when its client leaves)"
        )
    _check_timeout(fn, timeout)
    verb = _is_method(fn) and fn.__name__ in _VERBS
    generator = inspect.isgeneratorfunction(fn)
    if generator and not verb:
        _check_placement(fn, pool, False, verb, generator)
    get_pool = _PoolFinder(fn, pool, verb, generator)

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await get_pool().run(fn, args, kwargs, timeout=timeout)

    wrapper = _verb_wrapper(fn, get_pool, timeout, generator, call) if verb else call
    wrapper.__unblock_pool__ = pool  # type: ignore[attr-defined]
    return wrapper


def _verb_wrapper(
    fn: Callable[..., Any],
    get_pool: Callable[[], Pool],
    timeout: float | None,
    generator: bool,
    plain: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(fn)
    async def verb(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, RequestHandler):
            return await plain(self, *args, **kwargs)
        try:
            if generator:
                await streaming.stream(self, get_pool(), fn, (self, *args), kwargs)
                return None
            work = get_pool().run(fn, (self, *args), kwargs, timeout=timeout)
            result = await until_disconnect(self, work)
        except Overloaded as error:
            answer_overloaded(self, error)
            return None
        if result is not DISCONNECTED:
            write_result(self, result, fn.__name__)
        return None

    return verb
