"""The production master's share of a worker's life (issue 5), called by `worker.py`.

`prepare` runs right after the fork, before the app loads: it swaps `--reuse-port`
reservations for this worker's own listening sockets, sets `--umask`, drops to `--user`/
`--group` (after every bind) and arms the stack dump the master asks for on heartbeat timeout.
`loop_hook` returns the tick hook that starts the `--block-warn` watchdog once the loop runs
and publishes its lag each tick.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from .. import lifecycle
from ..sockets import reuseport
from . import privileges
from .watchdog import LoopWatchdog, install_stack_dump

log = logging.getLogger("tornado_run.worker")


def prepare(settings: Any, sockets: list[socket.socket]) -> list[socket.socket]:
    """Apply sockets, umask, identity and stack dump in this (new) worker; returns the sockets
    to serve on. Raises OSError/PermissionError when a step fails (the worker cannot serve)."""
    sockets = reuseport.worker_sockets(sockets, settings.backlog)
    umask = getattr(settings, "umask", None)
    if umask is not None:
        os.umask(umask)
    identity = privileges.resolve(getattr(settings, "user", None), getattr(settings, "group", None))
    if identity is not None:
        privileges.drop(identity)
    install_stack_dump()
    return sockets


def no_master_hooks(settings: Any) -> list[Callable[[Any], None]]:
    """For `--no-master`: arm the stack dump (SIGUSR2) and return the watchdog's tick hook."""
    install_stack_dump()
    return [loop_hook(settings)]


def loop_hook(settings: Any) -> Callable[[Any], None]:
    """A tick hook (called on the loop with the `Worker`) that starts the watchdog on its first
    call and then copies its lag figures into the worker's scoreboard slot each tick."""
    block_warn_ms = float(getattr(settings, "block_warn", 0) or 0)
    watchdog = LoopWatchdog(block_warn_ms / 1000 if block_warn_ms > 0 else None)
    started = False

    def hook(worker: Any) -> None:
        nonlocal started
        if not started:
            started = True
            watchdog.start()
            lifecycle.add_stats_provider("loop", watchdog.stats)
        slot = getattr(worker, "slot", None)
        if slot is not None:
            slot.view.max_lag_ms = watchdog.stats()["max_lag_ms"]
            slot.view.blocked_episodes = watchdog.episodes

    return hook
