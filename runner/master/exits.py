"""What the master concludes when a worker exits: a stop, a replacement counted by reason
(status and metrics show `restarts`), an abandoned reload, a boot failure that stops the
master (exit 2 or 3), or a crash that counts towards a crash loop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Any, Protocol

from ..errors import EXIT_APP_LOAD, EXIT_USAGE, format_error
from .crashes import CRASH_WINDOW, CrashLoop, describe_exit
from .records import WorkerRecord
from .replacement import RollingReplacement

log = logging.getLogger("tornado_run.master")


class Stoppable(Protocol):
    """What exit handling reads of the master and how it stops it."""

    @property
    def stopping(self) -> str | None: ...
    @property
    def booted(self) -> bool: ...
    def begin_stop(self, graceful: bool, code: int) -> None: ...


class ExitHandling:
    """Judges each worker exit and counts restarts by reason and fast deaths in a row."""

    def __init__(self, master: Stoppable, rolling: RollingReplacement) -> None:
        self.master = master
        self.rolling = rolling
        self.crashes = CrashLoop()
        self.restarts: dict[str, int] = {}

    def on_exit(self, worker: WorkerRecord, status: int, was_replacement: bool) -> None:
        """`status` is the waitpid status; `was_replacement`: it was a pending replacement."""
        cause = describe_exit(status)
        if worker.retiring or self.master.stopping:
            log.info("worker %d (pid %d) stopped (%s)", worker.worker_id, worker.pid, cause)
            if not self.master.stopping:
                hung = worker.kill_reason == "timeout"
                self._count_restart("timeout" if hung else worker.replace_reason or "retired")
            return
        if worker.kill_reason == "timeout":
            log.warning(
                "worker %d (pid %d) %s after missing its heartbeat; starting a new one",
                worker.worker_id,
                worker.pid,
                cause,
            )
            self._count_restart("timeout")
            return
        self._count_restart("crash")
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
            self.rolling.abandon(f"the new worker {cause} before it was ready")
            return
        log.warning(
            "worker %d (pid %d) %s; starting a new one", worker.worker_id, worker.pid, cause
        )
        self._count_crash(worker)

    def boot_timed_out(self, worker: WorkerRecord, timeout: float) -> None:
        """A worker not ready after `timeout` seconds: a boot failure (exit 3); kill it."""
        log.error(
            "worker %d (pid %d) not ready after %gs; killing it",
            worker.worker_id,
            worker.pid,
            timeout,
        )
        message = f"worker {worker.worker_id} did not become ready within {timeout:g}s"
        worker.failure = {"code": EXIT_APP_LOAD, "message": message}
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)
        worker.ready = True  # do not time it out twice

    def _on_boot_failure(
        self, worker: WorkerRecord, failure: dict[str, Any], was_replacement: bool
    ) -> None:
        code = int(failure.get("code", EXIT_APP_LOAD))
        code = code if code in (EXIT_USAGE, EXIT_APP_LOAD) else EXIT_APP_LOAD
        message = str(failure.get("message", "the worker failed to boot"))
        if was_replacement:
            headline, _, where = message.partition("\n")
            log.error(
                "reload abandoned: new worker %d (pid %d) could not boot: %s; "
                "old workers keep serving",
                worker.worker_id,
                worker.pid,
                headline,
            )
            if where:
                sys.stderr.write(where + "\n")
            self.rolling.abandon(headline[:200] or "boot failed")
            return
        sys.stderr.write(format_error(message))
        sys.stderr.flush()
        if self.master.booted:
            self._count_crash(worker)
            return
        log.error("stopping: the first worker could not boot (exit %d)", code)
        self.master.begin_stop(graceful=False, code=code)

    def _count_restart(self, reason: str) -> None:
        self.restarts[reason] = self.restarts.get(reason, 0) + 1

    def _count_crash(self, worker: WorkerRecord) -> None:
        if self.crashes.record(worker.born):
            log.error(
                "crash loop: %d workers died within %gs of starting, in a row; stopping (exit 3)",
                self.crashes.fast_deaths,
                CRASH_WINDOW,
            )
            self.master.begin_stop(graceful=False, code=EXIT_APP_LOAD)
