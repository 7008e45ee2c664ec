"""The production master's share of supervision (issue 5), driven by `master.py`'s loop.

`Production` owns what the master does beside forking and reaping: the control socket
(`tornado-run status`) and `--metrics` endpoint, `--max-requests`/`--max-memory`/
`--max-lifetime` verdicts, the heartbeat `--timeout` (stack dump, then SIGKILL) and `--reload`.
It never forks, starts no thread and no event loop; the master calls `check()` each turn of its
loop and acts on the returned `Decision`s with its own restart machinery.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..control import control_socket as control
from ..control.channel import READY
from ..control.metrics import metrics_server
from ..control.pollserver import PollServer
from ..control.snapshot import ProcessSampler, Snapshot, WorkerSnapshot, worker_figures
from ..errors import UsageError
from ..sockets.listener_sets import ListenerSets
from ..worker import privileges
from ..worker.watchdog import STACK_DUMP_SIGNAL
from .recycling import RecyclePolicy, Recycler
from .reloader import SourceWatcher

log = logging.getLogger("tornado_run.master")

DUMP_GRACE = 0.5
"""Seconds between asking a hung worker for its stacks and killing it."""
RETRY_AFTER = 30.0
"""Seconds before recycling a worker again after its replacement failed to boot."""


@dataclass(frozen=True)
class WorkerRef:
    """What the master tells `Production` about one live worker; `slot` is its SlotView."""

    worker_id: int
    pid: int
    slot: Any


@dataclass(frozen=True)
class Decision:
    """`kind` is "recycle" (replace this worker, replacement first) or "reload" (all)."""

    kind: str
    reason: str
    worker_id: int = -1
    pid: int = 0


class Production:
    """Per-master state; `workers` returns the live workers whenever a snapshot is needed."""

    def __init__(
        self, settings: Any, workers: Callable[[], list[WorkerRef]], version: str = ""
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.version = version
        self.started = time.monotonic()
        self.restarts: dict[str, int] = {}
        self.policy = RecyclePolicy(
            max_requests=getattr(settings, "max_requests", 0),
            max_requests_jitter=getattr(settings, "max_requests_jitter", 0),
            max_memory_mib=getattr(settings, "max_memory", 0),
            max_lifetime=getattr(settings, "max_lifetime", 0),
            max_lifetime_jitter=getattr(settings, "max_lifetime_jitter", 0),
        )
        self.timeout: float = getattr(settings, "timeout", 0) or 0
        self._recyclers: dict[int, Recycler] = {}
        self._decided: dict[int, float] = {}  # pid -> when it may be recycled again
        self._kill_at: dict[int, float] = {}
        self._hung: set[int] = set()
        self._sampler = ProcessSampler()
        self._servers: list[PollServer] = []
        self.control_path: Path | None = None
        self._child_servers: list[PollServer] = []
        self.sets: ListenerSets | None = None
        self._watcher: SourceWatcher | None = None

    def open(self) -> None:
        """Bind the control socket and --metrics; raises UsageError naming what failed (and
        leaves nothing bound behind)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self.control_path = control.control_path(
            getattr(self.settings, "control", None),
            str(self.settings.pid) if getattr(self.settings, "pid", None) else None,
            os.getpid(),
        )
        if self.control_path.parent == control.default_dir():
            control.remove_stale()
        try:
            self._servers.append(control.control_server(self.control_path, self.snapshot))
        except OSError as exc:
            raise UsageError(f"--control {str(self.control_path)!r}: {exc}") from None
        address = getattr(self.settings, "metrics", None)
        if address:
            try:
                self._servers.append(metrics_server(address, self.snapshot))
            except (OSError, ValueError) as exc:
                raise UsageError(f"--metrics {address!r}: {exc}") from None
            host, port = self._servers[-1].listener.getsockname()[:2]
            log.info("metrics on http://%s:%d/metrics", host, port)
        if getattr(self.settings, "reload", False):
            self._watcher = SourceWatcher([self.settings.app_dir])
            log.info("--reload: watching %d files", self._watcher.watched)
        self._warn_unreachable()

    def _warn_unreachable(self) -> None:
        identity = privileges.resolve(
            getattr(self.settings, "user", None), getattr(self.settings, "group", None)
        )
        if identity is None:
            return
        paths = [Path(sysconfig.get_paths()["stdlib"]), Path(self.settings.app_dir)]
        for problem in privileges.unreachable_paths(identity, paths):
            log.warning(
                "--user %s cannot read %s: imports in workers will fail", identity.name, problem
            )

    def fds(self) -> list[int]:
        """Descriptors the master waits on; call `service()` when one is readable."""
        return [server.fileno() for server in self._servers]

    def service(self) -> None:
        """Answer status and metrics clients without blocking."""
        for server in self._servers:
            server.service()

    def close_in_child(self) -> None:
        """In a freshly forked worker: close the master's listening and client sockets without
        unlinking anything. Their epoll descriptors are the master's extra readers, which the
        fork already closed; the selectors stay referenced so nothing closes that number again."""
        for server in self._servers:
            server.close_sockets()
        self._child_servers, self._servers = self._servers, []

    def close(self) -> None:
        """At the master's exit: close servers and remove the control socket."""
        for server in self._servers:
            server.close()
        self._servers = []
        if self.control_path is not None:
            control.remove(self.control_path)
        if self.sets is not None:
            self.sets.close()

    def worker_started(self, pid: int) -> None:
        """Start the worker's recycling clock."""
        if self.policy.enabled:
            self._recyclers[pid] = Recycler(self.policy, pid)

    def worker_gone(self, pid: int, reason: str) -> str:
        """Forget the worker; count its replacement under `reason` (e.g. "crash", "retired"),
        or "timeout" if it was killed for a missed heartbeat. Returns the reason counted."""
        self._recyclers.pop(pid, None)
        self._decided.pop(pid, None)
        self._kill_at.pop(pid, None)
        if pid in self._hung:
            self._hung.discard(pid)
            reason = "timeout"
        self.restarts[reason] = self.restarts.get(reason, 0) + 1
        return reason

    def recycle_failed(self, pid: int, retry_after: float = RETRY_AFTER) -> None:
        """The replacement for `pid` did not come up: keep it and decide again later."""
        self._decided[pid] = time.monotonic() + retry_after

    def check(self, now: float | None = None) -> list[Decision]:
        """Recycling verdicts, hung workers (dumped, then killed: the master sees a death) and
        --reload triggers due now."""
        now = time.monotonic() if now is None else now
        decisions: list[Decision] = []
        for ref in self.workers():
            self._check_heartbeat(ref, now)
            recycler = self._recyclers.get(ref.pid)
            if recycler is None or ref.slot.state != READY:
                continue
            if now < self._decided.get(ref.pid, 0.0):
                continue
            reason = recycler.check(ref.slot.requests, now)
            if reason is not None:
                self._decided[ref.pid] = float("inf")
                decisions.append(Decision("recycle", reason, ref.worker_id, ref.pid))
        self._kill_overdue(now)
        if self._watcher is not None:
            changed = self._watcher.poll(now)
            if changed:
                names = ", ".join(str(p) for p in changed[:3]) + (" ..." if changed[3:] else "")
                decisions.append(Decision("reload", f"--reload: changed {names}"))
        return decisions

    def wait_timeout(self) -> float:
        """The longest the master may sleep before `check()` has something to do."""
        return 0.1 if self._kill_at else 0.5

    def _check_heartbeat(self, ref: WorkerRef, now: float) -> None:
        beat = ref.slot.heartbeat
        if not self.timeout or ref.slot.state != READY or not beat or ref.pid in self._kill_at:
            return
        silent = now - beat
        if silent <= self.timeout:
            return
        log.error(
            "worker %d (pid %d): no heartbeat for %.1f s (--timeout %g); its stacks follow, "
            "then it is killed and replaced",
            ref.worker_id,
            ref.pid,
            silent,
            self.timeout,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, STACK_DUMP_SIGNAL)
        self._kill_at[ref.pid] = now + DUMP_GRACE
        self._hung.add(ref.pid)

    def _kill_overdue(self, now: float) -> None:
        for pid, when in list(self._kill_at.items()):
            if now >= when:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                del self._kill_at[pid]

    def timed_out(self, pid: int) -> bool:
        """True if `pid` was killed for a missed heartbeat (for the master's death log)."""
        return pid in self._hung

    def snapshot(self) -> Snapshot:
        """The current status of every worker (RSS and CPU % sampled now)."""
        refs = self.workers()
        self._sampler.forget_except({ref.pid for ref in refs})
        return Snapshot(
            master_pid=os.getpid(),
            uptime=time.monotonic() - self.started,
            workers=[self._worker_snapshot(ref) for ref in refs],
            restarts=dict(self.restarts),
            version=self.version,
        )

    def _worker_snapshot(self, ref: WorkerRef) -> WorkerSnapshot:
        slot = ref.slot
        rss, cpu = self._sampler.sample(ref.pid)
        figures = worker_figures(slot.stats if isinstance(slot.stats, dict) else {})
        return WorkerSnapshot(
            worker_id=ref.worker_id,
            pid=ref.pid,
            age=max(0.0, time.time() - slot.started) if slot.started else 0.0,
            state=slot.state_name,
            requests=slot.requests,
            in_flight=slot.in_flight,
            rss=rss,
            cpu_percent=cpu,
            max_lag_ms=max(float(slot.max_lag_ms), figures["max_lag_ms"]),
            blocked_episodes=max(int(slot.blocked_episodes), figures["blocked_episodes"]),
            pools=figures["pools"],
        )
