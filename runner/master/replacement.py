"""Rolling replacement: one new worker at a time, and an old one retires only once its
replacement serves, so capacity never dips. HUP and --reload make every worker of an older
generation old; a recycling verdict makes one worker old.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from .notify import SystemdNotifier
from .records import WorkerRecord
from .supervision import Supervision

log = logging.getLogger("tornado_run.master")


class Workforce(Protocol):
    """What the replacement needs of the master."""

    @property
    def workers(self) -> Mapping[int, WorkerRecord]: ...
    def spawn_worker(self) -> WorkerRecord | None: ...
    def retire_worker(self, worker: WorkerRecord) -> None: ...
    def active_count(self) -> int: ...


class RollingReplacement:
    """The master's replacement state: the current generation, the one replacement being
    started (`pending`), and the generation whose reload was abandoned."""

    def __init__(
        self, master: Workforce, supervision: Supervision, notifier: SystemdNotifier
    ) -> None:
        self.master = master
        self.supervision = supervision
        self.notifier = notifier
        self.generation = 0
        self.pending: int | None = None  # pid of the worker started to replace an old one
        self.abandoned = -1  # generation whose reload failed

    def reload(self) -> None:
        """Make every current worker old (HUP, --reload)."""
        self.generation += 1

    def recycle(self, worker: WorkerRecord, reason: str) -> None:
        """Make `worker` old for a recycling `reason` (e.g. "max-requests: ...")."""
        if worker.replace_reason is not None:
            return
        log.info(
            "recycling worker %d (pid %d): %s; its replacement starts first",
            worker.worker_id,
            worker.pid,
            reason,
        )
        worker.replace_reason = reason.split(":", 1)[0]

    def forget(self, pid: int) -> bool:
        """A worker exited; True if it was the pending replacement."""
        if pid != self.pending:
            return False
        self.pending = None
        return True

    def abandon(self, reason: str) -> None:
        """The replacement failed to boot (`reason`, for systemd's status): stop this
        generation's reload; workers waiting to be recycled keep serving and are judged again
        later."""
        self.abandoned = self.generation
        self.notifier.reload_abandoned(reason)
        for worker in self.master.workers.values():
            if worker.replace_reason is not None and not worker.retiring:
                worker.replace_reason = None
                self.supervision.recycle_failed(worker.pid)

    def _old(self) -> list[WorkerRecord]:
        reloading = self.abandoned != self.generation
        return sorted(
            (
                w
                for w in self.master.workers.values()
                if not w.retiring
                and (w.replace_reason is not None or (reloading and w.generation < self.generation))
            ),
            key=lambda w: w.retire_order,
        )

    def step(self) -> None:
        """Start the replacement, or retire the oldest worker once the replacement is ready."""
        old = self._old()
        if not old:
            self.notifier.reload_finished()
            return
        new = self.master.workers.get(self.pending) if self.pending is not None else None
        if new is None:
            new = self.master.spawn_worker()
            self.pending = new.pid if new is not None else None
            return
        if new.ready and new.failure is None:
            log.info(
                "reload: worker %d (pid %d) replaces worker %d (pid %d)",
                new.worker_id,
                new.pid,
                old[0].worker_id,
                old[0].pid,
            )
            self.master.retire_worker(old[0])
            self.pending = None
            if len(old) == 1:
                log.info(
                    "Reload complete: %d worker(s) on generation %d",
                    self.master.active_count(),
                    self.generation,
                )
