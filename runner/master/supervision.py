"""Supervision verdicts: which workers are hung (no heartbeat for `--timeout`), which must be
recycled (`--max-requests`, `--max-memory`, `--max-lifetime`), and whether a source change
asks for a reload (`--reload`).

`Supervision` only judges; the master acts on each `Verdict` with its own machinery (stack
dump and the kill schedule for a hung worker, the rolling replacement for the others). It
never forks, signals or starts a thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..control.channel import READY, SlotView
from ..settings.options import Settings
from .recycling import RecyclePolicy, Recycler
from .reloader import SourceWatcher

RETRY_AFTER = 30.0
"""Seconds before recycling a worker again after its replacement failed to boot."""


@dataclass(frozen=True)
class WorkerView:
    """One live worker as supervision sees it: ids and its scoreboard slot."""

    worker_id: int
    pid: int
    slot: SlotView


@dataclass(frozen=True)
class Verdict:
    """`hung`: dump and kill this worker; `recycle`: replace it, replacement first;
    `reload`: replace every worker. `reason` is one line for the log."""

    kind: Literal["hung", "recycle", "reload"]
    reason: str
    worker_id: int = -1
    pid: int = 0


class Supervision:
    """Per-master judgement state; call `verdicts()` once per turn of the master's loop."""

    def __init__(self, settings: Settings) -> None:
        self.policy = RecyclePolicy(
            max_requests=settings.max_requests,
            max_requests_jitter=settings.max_requests_jitter,
            max_memory_mib=settings.max_memory,
            max_lifetime=settings.max_lifetime,
            max_lifetime_jitter=settings.max_lifetime_jitter,
        )
        self.timeout = settings.timeout
        self.watcher = (
            SourceWatcher(
                settings.reload_dir or [settings.app_dir],
                settings.reload_include,
                settings.reload_exclude,
            )
            if settings.reload
            else None
        )
        self._recyclers: dict[int, Recycler] = {}
        self._not_before: dict[int, float] = {}  # pid -> when it may be recycled again
        self._hung: set[int] = set()

    def worker_started(self, pid: int) -> None:
        """Start the worker's recycling clock."""
        if self.policy.enabled:
            self._recyclers[pid] = Recycler(self.policy, pid)

    def worker_gone(self, pid: int) -> None:
        """Forget everything about a worker that exited."""
        self._recyclers.pop(pid, None)
        self._not_before.pop(pid, None)
        self._hung.discard(pid)

    def recycle_failed(self, pid: int, retry_after: float = RETRY_AFTER) -> None:
        """The replacement for `pid` did not come up: keep it and judge it again later."""
        self._not_before[pid] = time.monotonic() + retry_after

    def verdicts(self, workers: Iterable[WorkerView], now: float | None = None) -> list[Verdict]:
        """Everything due now; each hung or recycled worker is named once."""
        now = time.monotonic() if now is None else now
        found: list[Verdict] = []
        for view in workers:
            if view.slot.state != READY:
                continue  # a booting worker is judged by the boot timeout instead
            verdict = self._heartbeat(view, now) or self._recycling(view, now)
            if verdict is not None:
                found.append(verdict)
        if self.watcher is not None:
            changed = self.watcher.poll(now)
            if changed:
                names = ", ".join(str(p) for p in changed[:3]) + (" ..." if changed[3:] else "")
                found.append(Verdict("reload", f"--reload: changed {names}"))
        return found

    def _heartbeat(self, view: WorkerView, now: float) -> Verdict | None:
        beat = view.slot.heartbeat
        if not self.timeout or not beat or view.pid in self._hung:
            return None
        silent = now - beat
        if silent <= self.timeout:
            return None
        self._hung.add(view.pid)
        reason = f"no heartbeat for {silent:.1f} s (--timeout {self.timeout:g})"
        return Verdict("hung", reason, view.worker_id, view.pid)

    def _recycling(self, view: WorkerView, now: float) -> Verdict | None:
        recycler = self._recyclers.get(view.pid)
        if recycler is None or view.pid in self._hung:
            return None
        if now < self._not_before.get(view.pid, 0.0):
            return None
        reason = recycler.check(view.slot.requests, now)
        if reason is None:
            return None
        self._not_before[view.pid] = float("inf")  # until the master reports back
        return Verdict("recycle", reason, view.worker_id, view.pid)
