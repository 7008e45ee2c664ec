"""The supervising master: forks workers on the sockets it bound, and from one poll loop
reaps, respawns, resizes, replaces (HUP, recycling, --reload: one worker at a time) and stops
them.

Signal handlers only queue the signal (and `signal.set_wakeup_fd` wakes the poll); the loop
then calls `handle_<name>`. The master owns its collaborators and calls them by name:
`Supervision` judges (heartbeat, recycling, --reload), `ControlServices` answers status and
metrics, `ListenerSets` hands out --reuse-port sockets, `CrashLoop` counts fast deaths,
`CpuTier` runs the host-wide CPU tier's broker. Kills have one schedule:
`WorkerRecord.kill_at`. The master never creates threads or an event loop, so forking from it
is safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from typing import Any

from .. import __version__
from ..control.channel import STOP_REPLACED, STOP_SERVER, EventReader, Scoreboard
from ..errors import EXIT_FAILURE, EXIT_OK
from ..logsetup import reopen_log_files
from ..settings.options import Settings
from ..sockets.binding import close_all, describe, remove_unix_files
from ..sockets.listener_sets import ListenerSets
from ..worker import tls
from ..worker.watchdog import STACK_DUMP_SIGNAL
from . import pidfile
from .cputier import CpuTier
from .crashes import kill_and_reap
from .exits import ExitHandling
from .forking import fork_worker, prepare_tier_child
from .notify import SystemdNotifier
from .records import WorkerRecord
from .replacement import RollingReplacement
from .services import ControlServices
from .signals import SignalQueue
from .supervision import Supervision, Verdict, WorkerView

log = logging.getLogger("tornado_run.master")

READY_TIMEOUT = 60.0
"""Seconds a new worker may take to load the app and listen."""
KILL_GRACE = 5.0
"""Seconds past the graceful timeout before a stopping worker is killed."""
DUMP_GRACE = 0.5
"""Seconds between asking a hung worker for its stacks and killing it."""
_LOOP_WAIT = 0.5
_KILL_WAIT = 0.1


class Master:
    """Run with `Master(settings, sockets, workers).run()`; returns the exit code."""

    def __init__(self, settings: Settings, sockets: list[socket.socket], workers: int) -> None:
        self.settings = settings
        self.sockets = sockets
        self.num_workers = workers
        self.board = Scoreboard(max(64, 4 * workers))
        self.workers: dict[int, WorkerRecord] = {}
        self.next_worker_id = 0
        self.exit_code: int | None = None
        self.stopping: str | None = None  # None | "graceful" | "immediate"
        self.stop_code = EXIT_OK
        self.stop_deadline = 0.0
        self.booted = False
        self.announced_ready = False
        self.supervision = Supervision(settings)
        self.notifier = SystemdNotifier(self)  # takes NOTIFY_SOCKET out of the workers' env
        self.rolling = RollingReplacement(self, self.supervision, self.notifier)
        self.exits = ExitHandling(self, self.rolling)
        self.tier = CpuTier(settings.graceful_timeout, self)
        self.services = ControlServices(
            settings, self.worker_views, self.exits.restarts, __version__, self.tier.snapshot
        )
        self.listeners = ListenerSets(sockets, settings.backlog)
        self.signals = SignalQueue()
        self._killed_all = False

    # ---- main loop -------------------------------------------------------------------

    def open_services(self) -> None:
        """Bind the control socket and --metrics; raises UsageError naming what failed."""
        self.services.open()
        if self.supervision.watcher is not None:
            log.info("--reload: watching %d files", self.supervision.watcher.watched)

    def run(self) -> int:
        """Serve until stopped; always leaves no worker behind."""
        self.signals.install()
        pidfile.write(self.settings.pid)
        try:
            self.tier.start()
            for sock in self.sockets:
                log.info("Listening at %s", describe(sock, tls.enabled(self.settings)))
            while self.exit_code is None:
                self._dispatch_signals()
                self._read_events()
                self._reap()
                self._maintain()
                self.listeners.maintain(self)
                self.notifier.tick()
                if self.exit_code is None:
                    self._wait(_KILL_WAIT if self._kill_pending() else _LOOP_WAIT)
            return self.exit_code
        except Exception:
            log.exception("master failed")
            return EXIT_FAILURE
        finally:
            self._cleanup()

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a worker event or a status client wakes us, or `timeout`."""
        poller = select.poll()  # poll, not select: no FD_SETSIZE limit
        service_fds = self.services.fds()
        fds = [self.signals.wake_fd, *service_fds, *self.tier.fds()]
        fds += [w.events.fd for w in self.workers.values() if not w.events.eof]
        for fd in fds:
            poller.register(fd, select.POLLIN)
        try:
            readable = [fd for fd, _ in poller.poll(self.notifier.wait_cap(timeout) * 1000)]
        except InterruptedError:
            return
        if self.signals.wake_fd in readable:
            self.signals.clear_wake()
        if any(fd in service_fds for fd in readable):
            self.services.service()
        self.tier.service(readable)

    def _maintain(self) -> None:
        now = time.monotonic()
        if self.stopping:
            self._progress_stop(now)
            return
        self.rolling.step()
        self.tier.maintain(now, {w.generation for w in self.workers.values()})
        self._resize()
        for verdict in self.supervision.verdicts(self.worker_views(), now):
            self._act_on(verdict, now)
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                if worker.kill_reason == "retire":
                    log.warning(
                        "worker %d (pid %d) did not stop in time; killing it",
                        worker.worker_id,
                        worker.pid,
                    )
                self._signal(worker, signal.SIGKILL)
                worker.kill_at = None
            elif not worker.ready and not worker.retiring and now - worker.born > READY_TIMEOUT:
                self.exits.boot_timed_out(worker, READY_TIMEOUT)

    def _act_on(self, verdict: Verdict, now: float) -> None:
        if verdict.kind == "reload":
            log.info("%s; reloading workers", verdict.reason)
            self.handle_hup()
            return
        worker = self.workers.get(verdict.pid)
        if worker is None:
            return
        if verdict.kind == "hung":  # retiring or not: a blocked loop cannot drain either
            log.error(
                "worker %d (pid %d): %s; its stacks follow, then it is killed and replaced",
                worker.worker_id,
                worker.pid,
                verdict.reason,
            )
            self._signal(worker, STACK_DUMP_SIGNAL)
            worker.kill_at, worker.kill_reason = now + DUMP_GRACE, "timeout"
        elif not worker.retiring:
            self.rolling.recycle(worker, verdict.reason)

    def prepare_tier_child(self) -> None:
        """In a freshly forked broker: let go of what only the master owns."""
        prepare_tier_child(self)

    def _kill_pending(self) -> bool:
        return any(w.kill_at is not None for w in self.workers.values())

    # ---- signals ---------------------------------------------------------------------

    def _dispatch_signals(self) -> None:
        for name in self.signals.pop_names():
            handler = getattr(self, f"handle_{name}", None)
            if handler is not None:
                handler()

    def handle_term(self) -> None:
        """Graceful stop: workers drain, then exit 0."""
        log.info("TERM: stopping gracefully (up to %gs)", self.settings.graceful_timeout)
        self.begin_stop(graceful=True, code=EXIT_OK)

    def handle_int(self) -> None:
        """As TERM; a second INT stops at once."""
        if self.stopping:
            log.info("second INT: stopping now")
            self.begin_stop(graceful=False, code=EXIT_OK)
        else:
            log.info("INT: stopping gracefully (INT again to stop now)")
            self.begin_stop(graceful=True, code=EXIT_OK)

    def handle_quit(self) -> None:
        """Immediate stop."""
        log.info("QUIT: stopping now")
        self.begin_stop(graceful=False, code=EXIT_OK)

    def handle_hup(self) -> None:
        """Rolling reload: replace every worker by one that loads the app afresh."""
        if self.stopping:
            return
        self.rolling.reload()
        self.tier.start(self.rolling.generation)
        log.info("HUP: rolling reload of %d worker(s)", self.active_count())
        self.notifier.reload_started()

    def handle_ttin(self) -> None:
        self.num_workers += 1
        log.info("TTIN: now %d worker(s)", self.num_workers)

    def handle_ttou(self) -> None:
        if self.num_workers > 1:
            self.num_workers -= 1
        log.info("TTOU: now %d worker(s)", self.num_workers)

    def handle_usr1(self) -> None:
        """Reopen log files here and in every worker."""
        reopen_log_files()
        for worker in self.workers.values():
            self._signal(worker, signal.SIGUSR1)

    def handle_chld(self) -> None:
        """Nothing to do here: every loop turn reaps."""

    # ---- workers ---------------------------------------------------------------------

    def spawn_worker(self) -> WorkerRecord | None:
        """Fork a worker on the current generation; None if the scoreboard is full."""
        slot = self.board.claim()
        if slot is None:
            log.warning("cannot start another worker: all %d slots are in use", self.board.capacity)
            return None
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        pid, read_fd = fork_worker(self, worker_id, slot)
        self.supervision.worker_started(pid)
        record = WorkerRecord(
            pid, worker_id, slot, self.rolling.generation, time.monotonic(), EventReader(read_fd)
        )
        self.workers[pid] = record
        log.info("booting worker %d (pid %d)", worker_id, pid)
        return record

    def retire_worker(self, worker: WorkerRecord) -> None:
        """Ask a worker to drain and exit (killed if still there after the graceful timeout).
        Its slot says it is replaced (WebSockets get 1012), written before the TERM."""
        if worker.retiring:
            return
        worker.retiring = True
        worker.kill_at = time.monotonic() + self.settings.graceful_timeout + KILL_GRACE
        self.board.set_stop_reason(worker.slot, STOP_REPLACED)
        self._signal(worker, signal.SIGTERM)

    def _signal(self, worker: WorkerRecord, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def active_count(self) -> int:
        return sum(1 for w in self.workers.values() if not w.retiring)

    def _resize(self) -> None:
        """Start or retire workers until the non-retiring count matches the target."""
        # A reload's replacement is extra capacity until it takes an old worker's place.
        active = sorted(
            (w for w in self.workers.values() if not w.retiring and w.pid != self.rolling.pending),
            key=lambda w: (w.generation, w.born),
        )
        missing = self.num_workers - len(active)
        for _ in range(missing):
            if self.spawn_worker() is None:
                break
        for worker in active[: max(0, -missing)]:
            log.info(
                "retiring worker %d (pid %d): fewer workers wanted", worker.worker_id, worker.pid
            )
            self.retire_worker(worker)

    def worker_views(self) -> list[WorkerView]:
        """Each live worker with its scoreboard slot, by worker id (supervision and status)."""
        return [
            WorkerView(w.worker_id, w.pid, self.board.read(w.slot))
            for w in sorted(self.workers.values(), key=lambda w: w.worker_id)
        ]

    # ---- events and deaths -----------------------------------------------------------

    def _read_events(self) -> None:
        for worker in list(self.workers.values()):
            for event in worker.events.read_events():
                self._on_event(worker, event)

    def _on_event(self, worker: WorkerRecord, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            worker.ready = True
            self.booted = True
            log.info("worker %d (pid %d) ready", worker.worker_id, worker.pid)
            ready = sum(1 for w in self.workers.values() if w.ready and not w.retiring)
            if not self.announced_ready and ready >= self.num_workers:
                self.announced_ready = True
                log.info("Ready: %d worker(s) serving", ready)
                self.notifier.ready()
        elif kind == "failed":
            worker.failure = event

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._on_exit(worker, status)
            else:
                self.tier.on_exit(pid, status)

    def _on_exit(self, worker: WorkerRecord, status: int) -> None:
        for event in worker.events.read_events():
            self._on_event(worker, event)
        worker.events.close()
        self.board.release(worker.slot)
        self.supervision.worker_gone(worker.pid)
        self.exits.on_exit(worker, status, was_replacement=self.rolling.forget(worker.pid))

    # ---- stopping --------------------------------------------------------------------

    def begin_stop(self, graceful: bool, code: int) -> None:
        """Stop every worker (TERM to drain, or QUIT); the loop exits once all are gone.
        Each slot says the server stops (WebSockets get 1001), written before the TERM."""
        if self.stopping == "immediate" or (graceful and self.stopping == "graceful"):
            return
        if self.stopping is None:
            self.stop_code = code
        self.stopping = "graceful" if graceful else "immediate"
        wait = self.settings.graceful_timeout + KILL_GRACE if graceful else KILL_GRACE
        self.stop_deadline = time.monotonic() + wait
        self.notifier.stopping(graceful)
        for worker in self.workers.values():
            if graceful:
                self.board.set_stop_reason(worker.slot, STOP_SERVER)
            self._signal(worker, signal.SIGTERM if graceful else signal.SIGQUIT)

    def _progress_stop(self, now: float) -> None:
        if not self.workers:  # the tier drains once the workers are gone
            if self.tier.stop(now, graceful=self.stopping == "graceful"):
                self.exit_code = self.stop_code
        elif now > self.stop_deadline and not self._killed_all:
            log.warning(
                "%d worker(s) still running at the deadline; killing them", len(self.workers)
            )
            for worker in self.workers.values():
                self._signal(worker, signal.SIGKILL)
            self._killed_all = True
            self.stop_deadline = now + KILL_GRACE
        elif now > self.stop_deadline:
            log.error("workers %s survived SIGKILL; giving up", sorted(self.workers))
            self.exit_code = EXIT_FAILURE

    def _cleanup(self) -> None:
        kill_and_reap({pid: pid for pid in [*self.workers, *self.tier.pids()]}, KILL_GRACE)
        self.workers.clear()
        self.tier.close()
        self.services.close()
        self.listeners.close()
        close_all(self.sockets)
        remove_unix_files(self.settings.bind if self.settings.bind_given else ())
        pidfile.remove(self.settings.pid)
        self.signals.uninstall()


__all__ = ["Master", "WorkerRecord"]
