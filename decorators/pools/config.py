"""Validation of pool declarations, from `pools.configure()` or the config file's
`[pools.NAME]` tables. Every error is one `ConfigurationError` line naming the key, the value
and what is allowed (the runner turns it into exit code 2)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from tornado_run.runner.lifecycle import ConfigurationError

from .api import PoolSpec

BUILTIN_OPTIONS: dict[str, frozenset[str]] = {
    "thread": frozenset(),
    "process": frozenset({"cancel_running", "initializer", "initargs"}),
}
TABLE_KEYS = ("kind", "size", "max_pending", "timeout")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INITIALIZER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def reject_unknown(
    name: str, kind: str, options: Mapping[str, Any], allowed: Collection[str]
) -> None:
    """Raise `ConfigurationError` for the first option that pools of `kind` do not take."""
    for key, value in options.items():
        if key not in allowed:
            names = ", ".join(sorted({*TABLE_KEYS, *allowed}))
            raise ConfigurationError(
                f"pools.{name}.{key} = {value!r}: unknown setting for kind {kind!r} "
                f"(allowed: {names})"
            )


def make_spec(
    name: Any,
    kind: Any,
    size: Any,
    max_pending: Any,
    timeout: Any,
    options: Mapping[str, Any],
    kinds: Iterable[str],
) -> PoolSpec:
    """Check every value and return the `PoolSpec`, or raise `ConfigurationError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"pool name {name!r}: expected a non-empty name of letters, digits, '_' or '-'"
        )
    known = sorted(kinds)
    if kind not in known:
        raise ConfigurationError(
            f"pools.{name}.kind = {kind!r}: unknown pool kind (allowed: {', '.join(known)})"
        )
    if size == "auto":
        size = None
    elif size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise ConfigurationError(
            f'pools.{name}.size = {size!r}: expected an integer >= 1 or "auto"'
        )
    if max_pending is not None and (
        not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 0
    ):
        raise ConfigurationError(
            f"pools.{name}.max_pending = {max_pending!r}: expected an integer >= 0"
        )
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ConfigurationError(
            f"pools.{name}.timeout = {timeout!r}: expected seconds > 0 (or no timeout)"
        )
    allowed = BUILTIN_OPTIONS.get(kind)
    if allowed is not None:
        reject_unknown(name, kind, options, allowed)
        for key, value in options.items():
            if key == "cancel_running" and not isinstance(value, bool):
                raise ConfigurationError(
                    f"pools.{name}.cancel_running = {value!r}: expected true or false"
                )
        options = _checked_initializer(name, options)
    return PoolSpec(
        name=name,
        kind=kind,
        size=size,
        max_pending=max_pending,
        timeout=float(timeout) if timeout is not None else None,
        options=dict(options),
    )


def _checked_initializer(name: str, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate `initializer` (a module-level function or "module:function") and `initargs`
    (a tuple or list, picklable); return the options with `initargs` as a tuple."""
    initializer = options.get("initializer")
    initargs = options.get("initargs", ())
    if "initargs" in options and "initializer" not in options:
        raise ConfigurationError(f"pools.{name}.initargs = {initargs!r}: needs an initializer")
    if initializer is None:
        return options
    if isinstance(initializer, str):
        if not _INITIALIZER.fullmatch(initializer):
            raise ConfigurationError(
                f'pools.{name}.initializer = {initializer!r}: expected "module:function"'
            )
    elif not callable(initializer) or _unpicklable(initializer):
        raise ConfigurationError(
            f"pools.{name}.initializer = {initializer!r}: expected a module-level function "
            'or "module:function"'
        )
    if not isinstance(initargs, tuple | list) or _unpicklable(initargs):
        raise ConfigurationError(
            f"pools.{name}.initargs = {initargs!r}: expected a list of picklable arguments"
        )
    return {**options, "initargs": tuple(initargs)}


def _unpicklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=5)
    except Exception:
        return True
    return False


def specs_from_table(table: Mapping[str, Any], kinds: Iterable[str]) -> list[PoolSpec]:
    """Turn the config file's `[pools]` table into specs (kind defaults to "thread")."""
    specs = []
    for name, settings in table.items():
        if not isinstance(settings, Mapping):
            raise ConfigurationError(
                f"pools.{name} = {settings!r}: expected a table such as "
                f'[pools.{name}] with kind = "thread" or "process"'
            )
        values = dict(settings)
        fields = {key: values.pop(key, None) for key in TABLE_KEYS}
        specs.append(
            make_spec(
                name,
                fields["kind"] or "thread",
                fields["size"],
                fields["max_pending"],
                fields["timeout"],
                values,
                kinds,
            )
        )
    return specs
