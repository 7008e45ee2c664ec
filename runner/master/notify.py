"""systemd's readiness protocol, spoken by the master: one datagram per state change to the
socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).

`READY=1` (with `MAINPID=`) once the first workers serve; `RELOADING=1` with
`MONOTONIC_USEC=` when a rolling reload starts and `READY=1` when it completes or is
abandoned; `STOPPING=1` when the master stops; `STATUS=` whenever the line a person reads in
`systemctl status` changes; `WATCHDOG=1` from the master's own loop at half of
`WATCHDOG_USEC`, so systemd restarts a wedged master. Without `NOTIFY_SOCKET` nothing is sent.

The variables are taken out of the environment, so workers (and their pools) never see them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping
from typing import Protocol

from .records import WorkerRecord

log = logging.getLogger("tornado_run.master")

SEND_TIMEOUT = 1.0
"""Seconds a datagram may wait for room in systemd's queue before it is dropped."""
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Generation(Protocol):
    @property
    def generation(self) -> int: ...


class Restarts(Protocol):
    @property
    def restarts(self) -> Mapping[str, int]: ...


class Observed(Protocol):
    """What the notifier reads of the master to describe it."""

    @property
    def workers(self) -> Mapping[int, WorkerRecord]: ...
    @property
    def num_workers(self) -> int: ...
    @property
    def rolling(self) -> Generation: ...
    @property
    def exits(self) -> Restarts: ...


class SystemdNotifier:
    """The master's messages to systemd; every method is a no-op without `NOTIFY_SOCKET`."""

    def __init__(self, master: Observed, environ: MutableMapping[str, str] = os.environ) -> None:
        self.master = master
        found = {name: environ.pop(name, "") for name in VARIABLES}
        self.address = _socket_address(found["NOTIFY_SOCKET"])
        self.watchdog_interval = _watchdog_interval(found["WATCHDOG_USEC"], found["WATCHDOG_PID"])
        if self.address is None:
            self.watchdog_interval = None
        self.next_ping = 0.0
        self.started = False
        self.reloading = False
        self.phase = "Starting"  # the status line's first words
        self.last_status = ""
        self._failed_sends: set[int] = set()
        if self.address is not None:
            log.info("notifying systemd at %s", found["NOTIFY_SOCKET"])
        if self.watchdog_interval is not None:
            log.info("systemd watchdog: pinging every %gs", self.watchdog_interval / 2)

    # ---- events the master and its collaborators report ----------------------------

    def ready(self) -> None:
        """Every first-generation worker serves: the service has started."""
        if self.started:
            return
        self.started = True
        self.phase = "Serving"
        self._send("READY=1", f"MAINPID={os.getpid()}", self._status())

    def reload_started(self) -> None:
        """A HUP (or --reload) made every worker old; before the first READY it is only
        part of starting."""
        if not self.started:
            return
        self.reloading = True
        self.phase = f"Reloading to generation {self.master.rolling.generation}"
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", self._status())

    def reload_finished(self) -> None:
        """No old worker is left: the reload completed."""
        if not self.reloading:
            return
        self.reloading = False
        self.phase = f"Reload to generation {self.master.rolling.generation} complete"
        self._send("READY=1", self._status())

    def reload_abandoned(self, reason: str) -> None:
        """The replacement could not boot (`reason`); the old workers keep serving."""
        if not self.reloading:
            return
        self.reloading = False
        generation = self.master.rolling.generation
        self.phase = f"Reload to generation {generation} abandoned ({reason}), old workers kept"
        self._send("READY=1", self._status())

    def stopping(self, graceful: bool) -> None:
        """The master stops its workers (TERM, INT, QUIT, or a failure that stops it)."""
        first = not self.phase.startswith("Stopping")
        self.phase = "Stopping gracefully" if graceful else "Stopping now"
        if first:
            self._send("STOPPING=1", self._status())
        else:
            self._send(self._status())

    # ---- the master's loop ---------------------------------------------------------

    def tick(self) -> None:
        """Once per turn of the master's loop: ping the watchdog when due, and send the
        status line when it changed."""
        if self.address is None:
            return
        now = time.monotonic()
        if self.watchdog_interval is not None and now >= self.next_ping:
            self.next_ping = now + self.watchdog_interval / 2
            self._send("WATCHDOG=1")
        status = self._status()
        if status != self.last_status:
            self._send(status)

    def wait_cap(self, timeout: float) -> float:
        """`timeout`, shortened so that the loop wakes for the next watchdog ping."""
        if self.watchdog_interval is None:
            return timeout
        return max(0.0, min(timeout, self.next_ping - time.monotonic()))

    # ---- wire ----------------------------------------------------------------------

    def _status(self) -> str:
        if self.phase.startswith("Stopping"):
            return f"STATUS={self.phase}: {len(self.master.workers)} worker(s) left"
        serving = [
            w.generation
            for w in self.master.workers.values()
            if w.ready and not w.retiring and w.failure is None
        ]
        generations = sorted(set(serving)) or [self.master.rolling.generation]
        label = "generation" if len(generations) == 1 else "generations"
        restarts = sum(self.master.exits.restarts.values())
        return (
            f"STATUS={self.phase}: {len(serving)} of {self.master.num_workers} worker(s) "
            f"serving ({label} {', '.join(map(str, generations))}), {restarts} restart(s)"
        )

    def _send(self, *lines: str) -> None:
        if self.address is None:
            return
        for line in lines:
            if line.startswith("STATUS="):
                self.last_status = line
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if (exc.errno or 0) not in self._failed_sends:  # once per cause, not every ping
                self._failed_sends.add(exc.errno or 0)
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)


def _socket_address(value: str) -> str | None:
    """The address to send to: a path, or an abstract name ("@name"); None if unset or of
    a kind this client does not speak (vsock)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        log.warning("NOTIFY_SOCKET=%r: only path and @abstract sockets are supported", value)
    return None


def _watchdog_interval(usec: str, pid: str) -> float | None:
    """Seconds between the deadlines systemd expects pings by, if the watchdog is ours."""
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1_000_000
