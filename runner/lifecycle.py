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
import contextlib
import ctypes
import inspect
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from .control.channel import EventWriter
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
ENV_CPU_TIER = "TORNADO_RUN_CPU_TIER"
"""Unix socket path of the CPU tier's broker: set in workers run by a master."""
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


def cpu_tier_address() -> str | None:
    """Where this worker reaches the host-wide CPU tier (a unix socket path), or None outside
    a master-run worker (a script, a test, `--no-master`): process pools are then local."""
    return os.environ.get(ENV_CPU_TIER) or None


class BootFailed(Exception):
    """Raised by a boot hook when the worker cannot serve (a pool initializer raised); the
    message (a traceback included) is logged and the worker exits with code 3."""


BootHook = Callable[[], Awaitable[None]]
_boot_hooks: list[BootHook] = []


def add_boot_hook(hook: BootHook) -> None:
    """Register `hook` to run once a worker has loaded the app, before it serves."""
    if hook not in _boot_hooks:
        _boot_hooks.append(hook)


async def run_boot_hooks() -> None:
    """Run every boot hook in order; `BootFailed` from one stops the boot."""
    for hook in list(_boot_hooks):
        await hook()


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


# The CPU tier: the master starts and supervises it through these names only; what runs in
# it (the broker, its pools) belongs to the decorators and is imported in the child.

TIER_DRAIN_SIGNAL = signal.SIGUSR2
"""What the master sends the broker to drain it. The broker ignores TERM and INT: a service
manager or a terminal may send them to the whole process group, and the master orders the
stop (workers drain first, then the tier)."""

TierReport = Callable[..., None]
"""`report(event, **fields)`: the broker's line to the master ("ready", "stats", "failed")."""


@dataclass
class CpuTierHandle:
    """The master's handle on one broker process of the CPU tier."""

    pid: int
    generation: int
    address: str
    events_fd: int  # read end of the broker's event pipe (JSON lines)

    def drain(self) -> None:
        """Stop taking connections; exit once every connection closed and its calls ended."""
        self._signal(TIER_DRAIN_SIGNAL)

    def kill(self) -> None:
        """Stop at once (its pool processes follow it through their parent-death signal)."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


def start_cpu_tier(
    listener: socket.socket,
    generation: int,
    prepare_child: Callable[[], None],
    graceful_timeout: float,
) -> CpuTierHandle:
    """Fork the broker of the CPU tier serving `listener` (a bound, listening unix socket
    that the master keeps, so a respawned broker serves the same address). In the child,
    `prepare_child()` closes what the master alone owns and drops privileges first."""
    read_fd, write_fd = os.pipe()
    master_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_cpu_tier(listener, write_fd, master_pid, prepare_child, graceful_timeout)
    os.close(write_fd)
    address = str(listener.getsockname())
    return CpuTierHandle(pid, generation, address, read_fd)


def _run_cpu_tier(
    listener: socket.socket,
    events_fd: int,
    master_pid: int,
    prepare_child: Callable[[], None],
    graceful_timeout: float,
) -> NoReturn:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        # Signals sent to the whole process group reach the master, which decides for the tier.
        for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGTTIN", "SIGTTOU"):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        set_parent_death_signal()
        if os.getppid() != master_pid:
            os._exit(code)
        prepare_child()
        from tornado_run.decorators.pools.tier.broker import serve

        os.set_blocking(events_fd, False)  # a master that stops reading must not stall it
        code = serve(listener, EventWriter(events_fd).send, master_pid, graceful_timeout)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
