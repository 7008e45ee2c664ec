"""`--reuse-port` without lost connections: the master owns one SO_REUSEPORT listening socket
per worker position ("set"), and each worker serves on the set it is given.

The kernel spreads connections across the sets. A set's socket stays open in the master while
its worker is replaced (HUP, recycling, crash), so connections queued on it wait for the next
worker instead of being reset when the old worker closes its copy, which is what happens to a
worker's own socket when `net.ipv4.tcp_migrate_req` is 0. The master never accepts on them.

A new worker takes the set with the fewest serving workers; ties go to the set whose worker the
master will retire first (`WorkerRecord.retire_order`: due for recycling, oldest generation,
oldest start), so a rolling replacement takes
over its predecessor's set. A set left without workers when there are more sets than wanted
workers (TTOU) is closed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .reuseport import is_reservation, listen_sockets, warn_without_migration

log = logging.getLogger("tornado_run.master")


class Member(Protocol):
    """What the sets read of one of the master's workers."""

    @property
    def worker_id(self) -> int: ...
    @property
    def retiring(self) -> bool: ...
    @property
    def retire_order(self) -> tuple[bool, int, float]: ...


class Roster(Protocol):
    """What the sets read of the master: its live workers by pid and how many it wants."""

    @property
    def workers(self) -> Mapping[int, Member]: ...
    @property
    def num_workers(self) -> int: ...


@dataclass
class _Set:
    sockets: list[socket.socket]
    members: set[int] = field(default_factory=set)  # worker ids


class ListenerSets:
    """Per-worker listening sockets for every reservation among the master's sockets."""

    def __init__(self, master_sockets: list[socket.socket], backlog: int) -> None:
        self.addresses = [sock.getsockname()[:2] for sock in master_sockets if is_reservation(sock)]
        self.backlog = backlog
        self.sets: list[_Set | None] = []
        self.assigned: dict[int, int] = {}  # worker id -> set index

    @property
    def active(self) -> bool:
        """True when there is anything to balance (a TCP bind reserved with --reuse-port)."""
        return bool(self.addresses)

    def assign(
        self, master: Roster, worker_id: int, sockets: list[socket.socket]
    ) -> list[socket.socket]:
        """Before the fork of worker `worker_id`: pick its set; returns `sockets` with that
        set's sockets in place of the reservations."""
        if not self.active:
            return sockets
        index = self._choose(master)
        chosen = self.sets[index]
        assert chosen is not None
        chosen.members.add(worker_id)
        self.assigned[worker_id] = index
        return [s for s in sockets if not is_reservation(s)] + chosen.sockets

    def keep_only(self, sockets: list[socket.socket]) -> None:
        """In the forked worker: close every other set's sockets."""
        own = {id(sock) for sock in sockets}
        for entry in self.sets:
            for sock in entry.sockets if entry else []:
                if id(sock) not in own:
                    sock.close()

    def maintain(self, master: Roster) -> None:
        """Forget exited workers; close a set nobody serves any more when fewer workers are
        wanted (TTOU)."""
        live = {w.worker_id for w in master.workers.values()}
        for worker_id in [w for w in self.assigned if w not in live]:
            entry = self.sets[self.assigned.pop(worker_id)]
            if entry is not None:
                entry.members.discard(worker_id)
        serving = {w.worker_id for w in master.workers.values() if not w.retiring}
        open_sets = [i for i, entry in enumerate(self.sets) if entry is not None]
        for index in list(open_sets):
            entry = self.sets[index]
            assert entry is not None
            # Closed as soon as its last worker retires: that worker's drain then accepts
            # what is queued right before its own close, the last one on the socket.
            if not entry.members & serving and len(open_sets) > master.num_workers:
                log.info("closing listener set %d: fewer workers wanted", index)
                warn_without_migration()
                for sock in entry.sockets:
                    sock.close()
                self.sets[index] = None
                open_sets.remove(index)

    def close(self) -> None:
        """Close every set (at the master's exit)."""
        for entry in self.sets:
            for sock in entry.sockets if entry else []:
                with contextlib.suppress(OSError):
                    sock.close()
        self.sets = []

    def _choose(self, master: Roster) -> int:
        serving: dict[int, list[Member]] = {i: [] for i, e in enumerate(self.sets) if e is not None}
        for worker in master.workers.values():
            index = self.assigned.get(worker.worker_id)
            if index is not None and index in serving and not worker.retiring:
                serving[index].append(worker)
        if len(serving) < master.num_workers or not serving:
            return self._new_set()
        return min(
            serving,
            key=lambda i: (
                len(serving[i]),
                min((w.retire_order for w in serving[i]), default=(False, -1, 0.0)),
            ),
        )

    def _new_set(self) -> int:
        sockets: list[socket.socket] = []
        try:
            for host, port in self.addresses:
                sockets.extend(listen_sockets(host, port, self.backlog))
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        for index, entry in enumerate(self.sets):
            if entry is None:
                self.sets[index] = _Set(sockets)
                return index
        self.sets.append(_Set(sockets))
        return len(self.sets) - 1
