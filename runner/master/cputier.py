"""The master's side of the CPU tier: one broker process per generation, on a unix socket the
master binds before the workers start and keeps (so a respawned broker serves the same
address and workers' connections wait in its backlog meanwhile). The broker is forked when
the first worker connects: an app that never uses a process pool costs no process.

A broker that dies is started again on the same socket; fast deaths in a row are a crash loop
(exit 3), as for workers. HUP starts a new generation for new workers; the old broker stops
taking connections and exits once its workers are gone and their calls ended. At a stop, the
tier drains after the workers. What runs inside a broker is the decorators' business: the
master only uses `lifecycle.start_cpu_tier` and the handle it returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import lifecycle
from ..control.channel import EventReader
from ..errors import EXIT_APP_LOAD, format_error
from .crashes import CRASH_WINDOW, CrashLoop, describe_exit

log = logging.getLogger("tornado_run.master")

KILL_GRACE = 5.0
"""Seconds past the graceful timeout before a draining broker is killed."""


@dataclass
class _Generation:
    """One broker generation: its socket (kept by the master) and its current process."""

    number: int
    listener: socket.socket
    path: str
    handle: lifecycle.CpuTierHandle | None = None
    events: EventReader | None = None
    born: float = 0.0
    draining: bool = False
    started: bool = False  # a broker ran on it (respawned if it dies)
    kill_at: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class TierHost(Protocol):
    """What the tier asks of the master."""

    @property
    def stopping(self) -> str | None: ...
    def prepare_tier_child(self) -> None:
        """In a freshly forked broker: let go of what only the master owns."""

    def begin_stop(self, graceful: bool, code: int) -> None:
        """Stop the master: the tier cannot serve (a pool initializer raises, a crash loop)."""


class CpuTier:
    """Starts, respawns, reloads and stops the tier's brokers for `master`."""

    def __init__(self, graceful_timeout: float, master: TierHost) -> None:
        self.graceful_timeout = graceful_timeout
        self.master = master
        self.crashes = CrashLoop()
        self.restarts = 0
        self.current: _Generation | None = None
        self.old: list[_Generation] = []
        self._dir = tempfile.mkdtemp(prefix="tornado-run-tier-")
        self._stopping = False

    # ---- what the master asks ---------------------------------------------------------

    @property
    def address(self) -> str | None:
        """The socket path new workers connect to."""
        return self.current.path if self.current is not None else None

    def start(self, generation: int = 0) -> None:
        """Bind generation `generation`'s socket (its broker starts at the first connection);
        the previous generation (if any) drains."""
        path = os.path.join(self._dir, f"tier-{generation}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1024)
        previous, self.current = self.current, _Generation(generation, listener, path)
        if previous is not None:
            self._retire(previous)

    def fds(self) -> list[int]:
        """Event pipes and the socket of a broker not started yet: the master's poll waits
        on them and calls `service()` when one is readable."""
        fds = [g.events.fd for g in self._all() if g.events is not None and not g.events.eof]
        return fds + [g.listener.fileno() for g in self._unstarted()]

    def service(self, readable: list[int]) -> None:
        """Read the brokers' events; fork the broker a first worker connects to."""
        self.read_events()
        for gen in self._unstarted():
            if gen.listener.fileno() in readable:
                self._fork(gen)

    def _unstarted(self) -> list[_Generation]:
        if self._stopping:
            return []
        return [g for g in self._all() if not g.started and g.listener.fileno() >= 0]

    def child_fds(self) -> list[int]:
        """Descriptors a forked worker (or broker) closes: sockets and event pipes."""
        fds = [g.listener.fileno() for g in self._all() if g.listener.fileno() >= 0]
        return fds + [g.events.fd for g in self._all() if g.events is not None]

    def read_events(self) -> None:
        for gen in self._all():
            if gen.events is not None:
                for event in gen.events.read_events():
                    self._on_event(gen, event)

    def on_exit(self, pid: int, status: int) -> bool:
        """Handle a reaped pid; False if it is not one of the tier's brokers."""
        gen = next((g for g in self._all() if g.handle and g.handle.pid == pid), None)
        if gen is None:
            return False
        self.read_events()
        if gen.events is not None:
            gen.events.close()
        gen.handle, gen.events = None, None
        cause = describe_exit(status)
        if gen is not self.current or self._stopping or self.master.stopping:
            log.info("cpu tier generation %d stopped (%s)", gen.number, cause)
            self._forget(gen)
        elif os.waitstatus_to_exitcode(status) == EXIT_APP_LOAD:
            log.error("cpu tier (pid %d) could not start its pools; stopping (exit 3)", pid)
            self._fatal(EXIT_APP_LOAD)
        else:
            self._respawn(gen, pid, cause)
        return True

    def maintain(self, now: float, live_generations: set[int]) -> None:
        """Drain an old generation's broker once its workers are all gone (they may still
        connect until then); kill it if it overstays its drain."""
        for gen in list(self.old):
            if not gen.draining and gen.number not in live_generations:
                gen.draining = True
                if gen.handle is None:
                    self._forget(gen)
                    continue
                gen.handle.drain()
                gen.kill_at = now + self.graceful_timeout + KILL_GRACE
            if gen.handle is not None and gen.kill_at is not None and now >= gen.kill_at:
                log.warning("cpu tier generation %d did not drain in time; killing it", gen.number)
                gen.handle.kill()
                gen.kill_at = None

    def stop(self, now: float, graceful: bool) -> bool:
        """Once the workers are gone: drain (or kill) every broker; True when all exited."""
        if not self._stopping:
            self._stopping = True
            for gen in self._all():
                gen.kill_at = now + (self.graceful_timeout + KILL_GRACE if graceful else 0.0)
                if gen.handle is not None and graceful:
                    gen.handle.drain()
        for gen in self._all():
            if gen.handle is not None and gen.kill_at is not None and now >= gen.kill_at:
                gen.handle.kill()
                gen.kill_at = None
        return not any(g.handle is not None for g in self._all())

    def snapshot(self) -> dict[str, Any]:
        """What status and metrics show: the newest running broker's pid, generation and
        pools (an old one while the new generation has not started)."""
        gen = next((g for g in reversed(self._all()) if g.handle is not None), None)
        if gen is None or gen.handle is None:
            return {}
        return {
            "pid": gen.handle.pid,
            "generation": gen.number,
            "restarts": self.restarts,
            "pools": gen.stats.get("pools", {}),
        }

    def pids(self) -> list[int]:
        return [g.handle.pid for g in self._all() if g.handle is not None]

    def close(self) -> None:
        """At the master's exit, once it has killed and reaped `pids()`: close the sockets and
        pipes, remove the folder."""
        for gen in self._all():
            gen.handle = None
            if gen.events is not None:
                gen.events.close()
            gen.listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # ---- inside ---------------------------------------------------------------------

    def _fatal(self, code: int) -> None:
        self.master.begin_stop(graceful=False, code=code)

    def _all(self) -> list[_Generation]:
        return [*self.old, *([self.current] if self.current is not None else [])]

    def _fork(self, gen: _Generation) -> None:
        others = [fd for fd in self.child_fds() if fd != gen.listener.fileno()]

        def prepare() -> None:
            for fd in others:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.master.prepare_tier_child()

        gen.started = True
        gen.handle = lifecycle.start_cpu_tier(
            gen.listener, gen.number, prepare, self.graceful_timeout
        )
        gen.events = EventReader(gen.handle.events_fd)
        gen.born = time.monotonic()
        log.info("starting the cpu tier (pid %d, generation %d)", gen.handle.pid, gen.number)

    def _retire(self, gen: _Generation) -> None:
        self.old.append(gen)  # drained by `maintain` once its workers are gone

    def _forget(self, gen: _Generation) -> None:
        if gen in self.old:
            self.old.remove(gen)
        gen.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(gen.path)

    def _respawn(self, gen: _Generation, pid: int, cause: str) -> None:
        self.restarts += 1
        if self.crashes.record(gen.born):
            log.error(
                "crash loop: the cpu tier died %d times within %gs of starting, in a row; "
                "stopping (exit 3)",
                self.crashes.fast_deaths,
                CRASH_WINDOW,
            )
            self._fatal(EXIT_APP_LOAD)
            return
        log.warning("the cpu tier (pid %d) %s; starting a new one", pid, cause)
        gen.stats = {}
        self._fork(gen)

    def _on_event(self, gen: _Generation, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "stats":
            gen.stats = event
        elif kind == "ready":
            log.info("cpu tier (pid %s) ready", event.get("pid"))
        elif kind == "failed":
            sys.stderr.write(format_error(str(event.get("message", "the cpu tier failed"))))
            sys.stderr.flush()
            if gen is self.current and not (self._stopping or self.master.stopping):
                self._fatal(int(event.get("code", EXIT_APP_LOAD)))
