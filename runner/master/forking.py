"""Forking a worker, and what a child forked by the master leaves behind of it: the
descriptors and servers only the master owns (signal pipe, control and metrics servers, other
workers' event pipes, the CPU tier's sockets, other listener sets). One place for both kinds
of children, workers and the CPU tier's broker."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from typing import Protocol

from ..control.channel import Scoreboard
from ..settings.options import Settings
from ..sockets.listener_sets import ListenerSets
from ..worker import privileges
from ..worker.appload import add_app_dir
from ..worker.process import WorkerContext
from ..worker.setup import run_forked_worker
from .cputier import CpuTier
from .records import WorkerRecord
from .services import ControlServices
from .signals import SIGNALS, SignalQueue


class Forking(Protocol):
    """What of the master a fork reads, and what a fresh child has to let go of."""

    settings: Settings
    sockets: list[socket.socket]
    signals: SignalQueue
    services: ControlServices
    listeners: ListenerSets
    tier: CpuTier
    board: Scoreboard
    num_workers: int

    @property
    def workers(self) -> Mapping[int, WorkerRecord]: ...


def fork_worker(master: Forking, worker_id: int, slot: int) -> tuple[int, int]:
    """Fork worker `worker_id` on scoreboard `slot`. In the master, returns its pid and the
    read end of its event pipe; the child serves and exits, never returning."""
    read_fd, write_fd = os.pipe()
    ctx = WorkerContext(
        settings=master.settings,
        sockets=master.listeners.assign(master, worker_id, master.sockets),
        worker_id=worker_id,
        worker_count=master.num_workers,
        tier_address=master.tier.address,
        master_pid=os.getpid(),
        board=master.board,
        slot=slot,
        events_fd=write_fd,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        inherited = [read_fd, *release_in_child(master, ctx.sockets)]
        run_forked_worker(ctx, inherited, SIGNALS)
    os.close(write_fd)
    return pid, read_fd


def release_in_child(master: Forking, keep: list[socket.socket]) -> list[int]:
    """In a fresh worker: close the master's servers and the listener sets other than `keep`;
    return the other descriptors of the master, for the child to close."""
    return _release(master, keep) + master.tier.child_fds()


def _release(master: Forking, keep: list[socket.socket]) -> list[int]:
    fds = [*master.signals.fds, *master.services.fds()]
    fds += [worker.events.fd for worker in master.workers.values()]
    master.services.close_in_child()
    master.listeners.keep_only(keep)
    return fds


def prepare_tier_child(master: Forking) -> None:
    """In a fresh broker: close everything of the master's (HTTP sockets included; the tier
    closes its other generations' itself), take --umask, --user and --group like a worker,
    and import from the app's folder."""
    fds = _release(master, []) + [sock.fileno() for sock in master.sockets]
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    if master.settings.umask is not None:
        os.umask(master.settings.umask)
    identity = privileges.resolve(master.settings.user, master.settings.group)
    if identity is not None:
        privileges.drop(identity)
    add_app_dir(master.settings.app_dir)  # pool processes import the app's modules
