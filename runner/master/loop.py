"""The supervising master: forks workers on the sockets it bound, and from one select loop
reaps, respawns, resizes, reloads (HUP, one worker at a time) and stops them.

Signal handlers only queue the signal (and `signal.set_wakeup_fd` wakes the select); the loop
then calls `handle_<name>`. The master never creates threads or an event loop, so forking
from it is safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ..control.channel import EventReader, Scoreboard, SlotView
from ..cpus import usable_cores
from ..errors import EXIT_APP_LOAD, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, format_error
from ..logsetup import reopen_log_files
from ..settings.options import Settings
from ..sockets.binding import close_all, describe, remove_unix_files
from ..worker.process import WorkerContext, run_forked_worker
from . import pidfile
from .crashes import CRASH_LIMIT, CRASH_WINDOW, CrashLoop, describe_exit

log = logging.getLogger("tornado_run.master")

SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGCHLD")
READY_TIMEOUT = 60.0
"""Seconds a new worker may take to load the app and listen."""
KILL_GRACE = 5.0
"""Seconds past the graceful timeout before a stopping worker is killed."""
_LOOP_WAIT = 0.5


@dataclass
class WorkerRecord:
    """The master's bookkeeping for one worker process."""

    pid: int
    worker_id: int
    slot: int
    generation: int
    born: float  # time.monotonic()
    events: EventReader
    ready: bool = False
    retiring: bool = False
    kill_at: float | None = None  # SIGKILL if still alive at this monotonic time
    failure: dict[str, Any] | None = None  # the "failed" event, if the app could not load


class Master:
    """Run with `Master(settings, sockets, workers).run()`; returns the exit code."""

    def __init__(self, settings: Settings, sockets: list[socket.socket], workers: int) -> None:
        self.settings = settings
        self.sockets = sockets
        self.num_workers = workers
        self.cores = usable_cores()
        self.board = Scoreboard(max(64, 4 * workers))
        self.workers: dict[int, WorkerRecord] = {}
        self.generation = 0
        self.next_worker_id = 0
        self.exit_code: int | None = None
        self.stopping: str | None = None  # None | "graceful" | "immediate"
        self.stop_code = EXIT_OK
        self.stop_deadline = 0.0
        self.booted = False
        self.announced_ready = False
        self.replacement: int | None = None  # pid of the worker started for a reload
        self.reload_abandoned = -1  # generation whose reload failed
        self.crashes = CrashLoop()
        self.extra_readers: dict[int, Callable[[], None]] = {}  # fd -> callback (extensions)
        self.tick_hooks: list[Callable[[Master], None]] = []  # run on every loop turn
        # run in each forked worker before it serves (prod_master: sockets, identity, hooks)
        self.child_hooks: list[Callable[[WorkerContext], None]] = []
        # run in the master just before each fork (prod_master: which --reuse-port sockets)
        self.prefork_hooks: list[Callable[[WorkerContext], None]] = []
        self._queue: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        self._killed_all = False

    # ---- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; always leaves no worker behind."""
        self._install_signals()
        pidfile.write(self.settings.pid)
        try:
            for sock in self.sockets:
                log.info("Listening at %s", describe(sock))
            while self.exit_code is None:
                self._dispatch_signals()
                self._read_events()
                self._reap()
                self._maintain()
                for hook in self.tick_hooks:
                    hook(self)
                if self.exit_code is None:
                    self._wait(_LOOP_WAIT)
            return self.exit_code
        except Exception:
            log.exception("master failed")
            return EXIT_FAILURE
        finally:
            self._cleanup()

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a worker event or an extension's fd wakes us, or `timeout`."""
        poller = select.poll()  # poll, not select: no FD_SETSIZE limit
        fds = [self._wake_r, *self.extra_readers]
        fds += [w.events.fd for w in self.workers.values() if not w.events.eof]
        for fd in fds:
            poller.register(fd, select.POLLIN)
        try:
            readable = [fd for fd, _ in poller.poll(timeout * 1000)]
        except InterruptedError:
            return
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                while os.read(self._wake_r, 4096):
                    pass
        for fd in readable:
            callback = self.extra_readers.get(fd)
            if callback is not None:
                callback()

    def _maintain(self) -> None:
        now = time.monotonic()
        if self.stopping:
            self._progress_stop(now)
            return
        self._reload_step(now)
        self._resize()
        for worker in list(self.workers.values()):
            if worker.kill_at is not None and now > worker.kill_at:
                log.warning(
                    "worker %d (pid %d) did not stop in time; killing it",
                    worker.worker_id,
                    worker.pid,
                )
                self._signal(worker, signal.SIGKILL)
                worker.kill_at = None
            elif not worker.ready and not worker.retiring and now - worker.born > READY_TIMEOUT:
                self._boot_timed_out(worker)

    # ---- signals ---------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for name in SIGNALS:
            signal.signal(getattr(signal, name), self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if len(self._queue) < 32:
            self._queue.append(signum)

    def _dispatch_signals(self) -> None:
        while self._queue:
            signum = self._queue.pop(0)
            name = signal.Signals(signum).name[3:].lower()
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
        self.generation += 1
        log.info("HUP: rolling reload of %d worker(s)", self._active_count())

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
        read_fd, write_fd = os.pipe()
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        ctx = WorkerContext(
            settings=self.settings,
            sockets=self.sockets,
            worker_id=worker_id,
            worker_count=self.num_workers,
            cpu_share=max(1, self.cores // max(1, self.num_workers)),
            master_pid=os.getpid(),
            board=self.board,
            slot=slot,
            events_fd=write_fd,
        )
        for hook in self.prefork_hooks:
            hook(ctx)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            inherited = [read_fd, self._wake_r, self._wake_w, *self.extra_readers]
            inherited += [other.events.fd for other in self.workers.values()]
            run_forked_worker(ctx, inherited, SIGNALS, self.child_hooks)
        os.close(write_fd)
        record = WorkerRecord(
            pid, worker_id, slot, self.generation, time.monotonic(), EventReader(read_fd)
        )
        self.workers[pid] = record
        log.info("booting worker %d (pid %d)", worker_id, pid)
        return record

    def retire_worker(self, worker: WorkerRecord) -> None:
        """Ask a worker to drain and exit (killed if still there after the graceful timeout)."""
        if worker.retiring:
            return
        worker.retiring = True
        worker.kill_at = time.monotonic() + self.settings.graceful_timeout + KILL_GRACE
        self._signal(worker, signal.SIGTERM)

    def _signal(self, worker: WorkerRecord, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signum)

    def _active_count(self) -> int:
        return sum(1 for w in self.workers.values() if not w.retiring)

    def _resize(self) -> None:
        """Start or retire workers until the non-retiring count matches the target."""
        # A reload's replacement is extra capacity until it takes an old worker's place.
        active = sorted(
            (w for w in self.workers.values() if not w.retiring and w.pid != self.replacement),
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

    def views(self) -> list[tuple[WorkerRecord, SlotView]]:
        """Each live worker with its scoreboard slot (for status and metrics)."""
        return [
            (w, self.board.read(w.slot))
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

    def _on_exit(self, worker: WorkerRecord, status: int) -> None:
        for event in worker.events.read_events():
            self._on_event(worker, event)
        worker.events.close()
        self.board.release(worker.slot)
        cause = describe_exit(status)
        was_replacement = worker.pid == self.replacement
        if was_replacement:
            self.replacement = None
        if worker.retiring or self.stopping:
            log.info("worker %d (pid %d) stopped (%s)", worker.worker_id, worker.pid, cause)
            return
        if worker.failure is not None:
            self._on_boot_failure(worker, worker.failure, was_replacement)
            return
        if was_replacement and not worker.ready:
            log.error(
                "reload abandoned: new worker %d (pid %d) %s before it was ready; "
                "old workers keep serving",
                worker.worker_id,
                worker.pid,
                cause,
            )
            self.reload_abandoned = self.generation
            return
        log.warning(
            "worker %d (pid %d) %s; starting a new one", worker.worker_id, worker.pid, cause
        )
        self._count_crash(worker)

    def _on_boot_failure(
        self, worker: WorkerRecord, failure: dict[str, Any], was_replacement: bool
    ) -> None:
        code = int(failure.get("code", EXIT_APP_LOAD))
        code = code if code in (EXIT_USAGE, EXIT_APP_LOAD) else EXIT_APP_LOAD
        sys.stderr.write(format_error(str(failure.get("message", "the worker failed to boot"))))
        sys.stderr.flush()
        if was_replacement:
            log.error(
                "reload abandoned: the new worker could not load the app; old workers keep serving"
            )
            self.reload_abandoned = self.generation
            return
        if self.booted:
            self._count_crash(worker)
            return
        log.error("stopping: the application failed to load (exit %d)", code)
        self.begin_stop(graceful=False, code=code)

    def _count_crash(self, worker: WorkerRecord) -> None:
        if self.crashes.record(worker.born):
            log.error(
                "crash loop: %d workers died within %gs of starting, in a row; stopping (exit 3)",
                self.crashes.fast_deaths,
                CRASH_WINDOW,
            )
            self.begin_stop(graceful=False, code=EXIT_APP_LOAD)

    def _boot_timed_out(self, worker: WorkerRecord) -> None:
        log.error(
            "worker %d (pid %d) not ready after %gs; killing it",
            worker.worker_id,
            worker.pid,
            READY_TIMEOUT,
        )
        worker.failure = {
            "code": EXIT_APP_LOAD,
            "message": f"worker {worker.worker_id} did not become ready within {READY_TIMEOUT:g}s",
        }
        self._signal(worker, signal.SIGKILL)
        worker.ready = True  # do not time it out twice

    # ---- reload ----------------------------------------------------------------------

    def _reload_step(self, now: float) -> None:
        """One replacement at a time: start it, wait until it is ready, retire an old one."""
        if self.reload_abandoned == self.generation:
            return
        old = sorted(
            (w for w in self.workers.values() if w.generation < self.generation and not w.retiring),
            key=lambda w: w.born,
        )
        if not old:
            return
        new = self.workers.get(self.replacement) if self.replacement is not None else None
        if new is None:
            new = self.spawn_worker()
            self.replacement = new.pid if new is not None else None
            return
        if new.ready and new.failure is None:
            log.info(
                "reload: worker %d (pid %d) replaces worker %d (pid %d)",
                new.worker_id,
                new.pid,
                old[0].worker_id,
                old[0].pid,
            )
            self.retire_worker(old[0])
            self.replacement = None
            if len(old) == 1:
                log.info(
                    "Reload complete: %d worker(s) on generation %d",
                    self._active_count(),
                    self.generation,
                )

    # ---- stopping --------------------------------------------------------------------

    def begin_stop(self, graceful: bool, code: int) -> None:
        """Stop every worker (TERM to drain, or QUIT); the loop exits once all are gone."""
        if self.stopping == "immediate" or (graceful and self.stopping == "graceful"):
            return
        if self.stopping is None:
            self.stop_code = code
        self.stopping = "graceful" if graceful else "immediate"
        wait = self.settings.graceful_timeout + KILL_GRACE if graceful else KILL_GRACE
        self.stop_deadline = time.monotonic() + wait
        for worker in self.workers.values():
            self._signal(worker, signal.SIGTERM if graceful else signal.SIGQUIT)

    def _progress_stop(self, now: float) -> None:
        if not self.workers:
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
        for worker in self.workers.values():
            self._signal(worker, signal.SIGKILL)
        deadline = time.monotonic() + KILL_GRACE
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.workers.pop(pid, None)
            else:
                time.sleep(0.02)
        close_all(self.sockets)
        remove_unix_files(self.settings.bind if self.settings.bind_given else ())
        pidfile.remove(self.settings.pid)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)


__all__ = ["CRASH_LIMIT", "CRASH_WINDOW", "Master", "WorkerRecord", "describe_exit"]
