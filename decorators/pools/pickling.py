"""Moving calls into process-pool children.

`@unblock` rebinds a module-level name to its wrapper, so pickle cannot send the original
function by reference. Calls go as one pickled payload naming the function by module and
qualname instead; the child resolves that name and calls the function behind the wrapper.
Pickling happens in the caller, so an argument that cannot be pickled fails that call at once
with a clear `TypeError` and never reaches (or breaks) the pool.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing.forkserver
import os
import pickle
from collections.abc import Callable
from typing import Any

_PICKLE_ERRORS = (pickle.PicklingError, TypeError, AttributeError)
_resolved: dict[tuple[str, str], Callable[..., Any]] = {}
_references: dict[Callable[..., Any], tuple[str, str] | None] = {}


def describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def _lookup(module: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def reference(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """Return (module, qualname) when `fn` is reachable only through an @unblock wrapper,
    None when plain pickling sends it. Raise `TypeError` for lambdas and nested functions."""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if qualname is None or module is None:
        return None  # partials and callable objects pickle by value
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"a process pool cannot run {describe(fn)}: a lambda or nested function cannot be "
            "sent to another process; define it at module level"
        )
    try:
        found = _lookup(module, qualname)
    except (ImportError, AttributeError):
        return None
    if found is fn:
        return None
    if getattr(found, "__wrapped__", None) is fn:
        return (module, qualname)
    raise TypeError(
        f"a process pool cannot run {describe(fn)}: that name refers to another object; "
        "give the function its own module-level name"
    )


def target_of(fn: Callable[..., Any]) -> Callable[..., Any] | tuple[str, str]:
    """What to pickle for `fn`: itself, or the (module, qualname) of its @unblock wrapper."""
    try:
        ref = _references[fn]
    except KeyError:
        ref = _references[fn] = reference(fn)
    except TypeError:  # unhashable callable object
        ref = reference(fn)
    return ref or fn


def pickle_error(fn: Callable[..., Any], error: Exception) -> TypeError:
    """The `TypeError` for a call whose arguments cannot be pickled."""
    return TypeError(
        f"the arguments of {describe(fn)}() cannot be sent to a process pool: {error}; "
        "pass plain data (numbers, strings, lists, dicts, dataclasses)"
    )


def pack(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle one call for `run_packed`, raising `TypeError` naming what cannot be pickled."""
    try:
        return pickle.dumps((target_of(fn), args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except _PICKLE_ERRORS as error:
        raise pickle_error(fn, error) from None


def release_forkserver() -> None:
    """Close this forkserver child's copy of the forkserver's keep-alive pipe.

    multiprocessing hands every forkserver child that pipe's write end, so the forkserver
    outlives its owner for as long as any child lives; a pool's zygote would then keep the
    forkserver, and so itself, alive after the process that owns the pool is gone.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def resolve(target: Any) -> Callable[..., Any]:
    """The function a call names: a (module, qualname) reference of an @unblock wrapper
    resolves to the function behind it; anything else is the callable itself."""
    if not isinstance(target, tuple):
        return target  # type: ignore[no-any-return]
    fn = _resolved.get(target)
    if fn is None:
        try:
            fn = _lookup(*target).__wrapped__
        except (ImportError, AttributeError) as error:
            raise RuntimeError(
                f"the process pool child cannot find {'.'.join(target)}: {error}; "
                "functions defined in `python -c` or an interactive session cannot run in "
                "a process pool: define them in a module or script file"
            ) from None
        _resolved[target] = fn
    return fn


def run_packed(payload: bytes) -> bytes:
    """Child side (a caller's own executor): resolve and call the function, and return its
    pickled result."""
    target, args, kwargs = pickle.loads(payload)
    fn = resolve(target)
    result = fn(*args, **kwargs)
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except _PICKLE_ERRORS as error:
        raise TypeError(
            f"the result of {describe(fn)}() cannot be sent back from the process pool: "
            f"{error}; return plain data"
        ) from None


def unpack(result: bytes) -> Any:
    return pickle.loads(result)
