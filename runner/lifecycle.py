"""Hooks that let code running inside a worker take part in its life without the runner
knowing what that code is.

The runner calls `run_shutdown_hooks` while a worker drains, and `collect_stats` when the
master asks for status. `GOING_AWAY` and `SERVICE_RESTART` are the WebSocket close codes a
draining worker sends, which a handler's `on_server_shutdown(code)` receives. The decorators
package registers its pools and background jobs here, so `runner/` never imports anything
about pools.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .cpus import usable_cores as usable_cores
from .master.crashes import describe_exit as describe_exit
from .master.crashes import describe_exitcode as describe_exitcode
from .worker.tornado_adapter import handler_finished as handler_finished
from .worker.tornado_adapter import headers_written as headers_written

log = logging.getLogger("tornado_run.lifecycle")

ShutdownHook = Callable[[float], Awaitable[None] | None]
"""Called with the seconds left before the graceful deadline; may be async."""

StatsProvider = Callable[[], dict[str, Any]]

GOING_AWAY = 1001
"""WebSocket close code sent when the server stops (TERM or INT to the master)."""
SERVICE_RESTART = 1012
"""WebSocket close code sent when the worker is replaced (HUP, --reload, recycling, TTOU):
clients can reconnect at once and reach a new worker."""

# Environment the master sets in each worker (read here so decorators need not know it).
ENV_WORKER_COUNT = "TORNADO_RUN_WORKER_COUNT"
ENV_CPU_SHARE = "TORNADO_RUN_CPU_SHARE"
ENV_GRACEFUL_TIMEOUT = "TORNADO_RUN_GRACEFUL_TIMEOUT_SECONDS"

ENV_POOLS_CONFIG = "TORNADO_RUN_POOLS_CONFIG"
"""JSON of the config file's `[pools]` table, passed through untouched for the decorators."""


class ConfigurationError(ValueError):
    """A configuration value is invalid; the message is one line naming key, value and what
    is allowed. Raised while a worker loads the app, it makes the worker exit with code 2."""


_shutdown_hooks: list[ShutdownHook] = []
_stats_providers: dict[str, StatsProvider] = {}


def add_shutdown_hook(hook: ShutdownHook) -> None:
    """Register `hook` to run once when this process stops gracefully (last added runs first)."""
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


async def run_shutdown_hooks(timeout: float) -> None:
    """Run every shutdown hook, newest first, sharing `timeout` seconds between them.

    A hook that raises is logged and the next one still runs; a hook still running at the
    deadline is abandoned with a warning.
    """
    deadline = time.monotonic() + timeout
    for hook in reversed(list(_shutdown_hooks)):
        remaining = max(0.0, deadline - time.monotonic())
        try:
            result = hook(remaining)
            if inspect.isawaitable(result):
                await asyncio.wait_for(_as_coroutine(result), timeout=max(remaining, 0.001))
        except TimeoutError:
            log.warning("shutdown hook %r still running at the graceful deadline", hook)
        except Exception:
            log.exception("shutdown hook %r failed", hook)


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


def add_stats_provider(name: str, provider: StatsProvider) -> None:
    """Publish `provider()` under `name` in this worker's status (replaces an older one)."""
    _stats_providers[name] = provider


def collect_stats() -> dict[str, dict[str, Any]]:
    """Return every provider's current figures; a provider that raises is skipped and logged."""
    stats: dict[str, dict[str, Any]] = {}
    for name, provider in list(_stats_providers.items()):
        try:
            stats[name] = provider()
        except Exception:
            log.exception("stats provider %r failed", name)
    return stats


def cpu_share() -> int | None:
    """Cores a CPU-bound pool in this worker may use (`max(1, cores // workers)`), or None
    outside `tornado-run`."""
    value = os.environ.get(ENV_CPU_SHARE)
    return max(1, int(value)) if value and value.isdigit() else None


def pools_config() -> dict[str, Any]:
    """The `[pools]` table of the runner's config file (empty outside `tornado-run`)."""
    value = os.environ.get(ENV_POOLS_CONFIG)
    if not value:
        return {}
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else {}


# What code running in a worker (the decorators) needs from the rest of the runner, so that
# this module stays the only runner module it imports: `usable_cores`, `describe_exit`,
# `describe_exitcode`, the Tornado adapter's `headers_written` and `handler_finished`
# (imported above) and the function below.

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(signum: int = signal.SIGKILL) -> bool:
    """Ask Linux to send `signum` to this process when its parent exits; False where prctl
    is unavailable (other systems, no libc) or refuses. A parent that is already gone does
    not count, so callers check `os.getppid()` afterwards."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
