"""The worker's accept loop, shared by every HTTP server kind: it accepts on the listening
sockets and hands each connection to a `ConnectionSink`.

Two things stop it for a while, and it resumes by itself:

- `--max-connections`: at the cap the readers are removed, so new connections wait in the
  kernel's listen queue (and, on a shared socket, go to another worker) instead of being
  accepted and refused. A closed connection resumes accepting (`released()`, or a short poll
  for a sink that does not call it).
- Out of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the connection stays queued, so
  the socket stays readable and an immediate retry would spin. The readers are removed for a
  backoff that doubles from `BACKOFF_START` to `BACKOFF_MAX`; the episode is logged once when
  it starts and once when accepting works again, with the count of refused attempts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from typing import Any, Protocol

from ..sockets.reuseport import accept_queued
from .loops import current_loop

log = logging.getLogger("tornado_run.worker")

RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() errors that mean this process or the system is out of something."""
CLIENT_ERRORS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
"""accept() errors about one connection only (gone before it was accepted, or refused by a
firewall rule): skip it and take the next."""
BACKOFF_START = 0.05
BACKOFF_MAX = 1.0
CAP_POLL = 0.1
"""Seconds between checks of the sink's connection count while at the cap."""
BURST = 128
"""Most connections accepted per readable event, so a flood cannot starve the loop."""
CAP_LOG_INTERVAL = 60.0
SETTLE = 0.05
EPISODE_QUIET = 1.0
"""Seconds of accepting with no resource error that end an out-of-resources episode: at the
limit accepts succeed and fail by turns (a burst of queued connections takes the descriptors
that closing ones just gave back), and that is one episode with one closing line."""
"""Seconds a sink gets to count the connections just handed to it."""


class ConnectionSink(Protocol):
    """What serves the accepted connections: an HTTP server kind."""

    def accepted(self, sock: socket.socket, address: Any) -> None:
        """Serve a newly accepted (non-blocking) connection."""
        ...

    @property
    def connection_count(self) -> int:
        """Connections open now, counted as soon as `accepted` returns or shortly after."""
        ...


class Acceptor:
    """Accepts on `sockets` for `sink`, at most `max_connections` open at once. Call `start()`
    on the running loop; `released()` when a connection closes (optional, resumes at once);
    `stop()` and `take_queued()` to drain; `close()` to close the listening sockets."""

    def __init__(
        self, sink: ConnectionSink, sockets: list[socket.socket], max_connections: int
    ) -> None:
        self.sink = sink
        self.sockets = list(sockets)
        self.max_connections = max_connections
        self.cap_hits = 0
        """Times accepting paused because the sink held `max_connections`."""
        self.refused = 0
        """accept() attempts that failed for lack of resources, over all episodes."""
        self.resource_episodes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._stopped = False
        self._at_cap = False
        self._timer: asyncio.TimerHandle | None = None
        self._backoff = 0.0  # > 0 while in an out-of-resources episode
        self._episode: tuple[float, int, str] = (0.0, 0, "")  # started, refused before, errno
        self._cap_logged = (0.0, 0)  # when, cap_hits then
        self._floor = 0  # connections handed over, not necessarily counted by the sink yet
        self._settle_timer: asyncio.TimerHandle | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._recovered = 0.0  # when accepting first worked again in this episode

    def start(self) -> None:
        """Start accepting (on the running loop)."""
        self._loop = current_loop()
        for sock in self.sockets:
            sock.setblocking(False)
        self._resume()

    def add(self, sockets: list[socket.socket]) -> None:
        """Accept on more listening sockets too."""
        for sock in sockets:
            sock.setblocking(False)
            self.sockets.append(sock)
            if self._reading and self._loop is not None:
                self._loop.add_reader(sock.fileno(), self._on_readable, sock)

    def released(self) -> None:
        """A connection closed: resume accepting if the cap was what stopped it."""
        if self._at_cap and self.open_connections < self.max_connections:
            self._resume()

    def stop(self) -> None:
        """Stop accepting for good (the listening sockets stay open for `take_queued`)."""
        self._stopped = True
        self._pause()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None

    def take_queued(self) -> int:
        """Accept what is already queued on the sockets, whatever the cap, and hand it to the
        sink: a worker's own --reuse-port socket resets its queue when it closes."""
        return sum(accept_queued(sock, self._hand_over) for sock in self.sockets)

    def close(self) -> None:
        """Stop, then close the listening sockets."""
        self.stop()
        for sock in self.sockets:
            sock.close()

    def _resume(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._at_cap = False
        if self._stopped or self._reading or self._loop is None:
            return
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        self._reading = True

    def _pause(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reading and self._loop is not None:
            for sock in self.sockets:
                if sock.fileno() >= 0:
                    self._loop.remove_reader(sock.fileno())
        self._reading = False

    @property
    def open_connections(self) -> int:
        """The sink's count, or what it will be once the connections just handed over are
        set up (a sink may count a connection a few loop turns after `accepted`)."""
        count = self.sink.connection_count
        if count >= self._floor:
            self._floor = 0  # the sink has caught up
        return max(count, self._floor)

    def _on_readable(self, sock: socket.socket) -> None:
        start = self.open_connections
        handed = 0
        try:
            for _ in range(max(0, min(BURST, self.max_connections - start))):
                try:
                    conn, address = sock.accept()
                except BlockingIOError:
                    self._end_episode()
                    return
                except OSError as exc:
                    if exc.errno in CLIENT_ERRORS:
                        continue
                    self._out_of_resources(exc)
                    return
                self._end_episode()
                self._hand_over(conn, address)
                handed += 1
        finally:
            if handed:
                self._settle(start + handed)
        if self.open_connections >= self.max_connections:
            self._cap_reached()

    def _settle(self, expected: int) -> None:
        """Count `expected` connections open until the sink has had `SETTLE` seconds to
        count the ones just handed over."""
        self._floor = expected
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        assert self._loop is not None
        self._settle_timer = self._loop.call_later(SETTLE, self._settled)

    def _settled(self) -> None:
        self._floor = 0
        self._settle_timer = None
        self.released()

    def _hand_over(self, conn: socket.socket, address: Any) -> None:
        conn.setblocking(False)
        try:
            self.sink.accepted(conn, address)
        except Exception:
            log.exception("accept (pid %d): serving a new connection failed", os.getpid())
            conn.close()

    def _cap_reached(self) -> None:
        self._pause()
        self._at_cap = True
        self.cap_hits += 1
        self._log_cap()
        self._poll_cap()

    def _poll_cap(self) -> None:
        if self._stopped or not self._at_cap or self._loop is None:
            return
        if self.open_connections < self.max_connections:
            self._resume()
            return
        self._timer = self._loop.call_later(CAP_POLL, self._poll_cap)

    def _log_cap(self) -> None:
        when, hits = self._cap_logged
        now = time.monotonic()
        if hits and now - when < CAP_LOG_INTERVAL:
            return
        log.warning(
            "accept (pid %d): %d connections open, the --max-connections cap; new connections "
            "wait in the listen queue until one closes (reached %d times so far)",
            os.getpid(),
            self.max_connections,
            self.cap_hits,
        )
        self._cap_logged = (now, self.cap_hits)

    def _out_of_resources(self, exc: OSError) -> None:
        self._pause()
        self.refused += 1
        if self._quiet_timer is not None:  # the same episode goes on
            self._quiet_timer.cancel()
            self._quiet_timer = None
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if not self._backoff:
            self.resource_episodes += 1
            self._episode = (time.monotonic(), self.refused - 1, name)
            self._backoff = BACKOFF_START
            level = logging.WARNING if exc.errno in RESOURCE_ERRORS else logging.ERROR
            log.log(
                level,
                "accept (pid %d): %s (%s) with %d connections open; pausing accepts, "
                "retrying with a backoff up to %gs",
                os.getpid(),
                os.strerror(exc.errno) if exc.errno else exc,
                name,
                self.sink.connection_count,
                BACKOFF_MAX,
            )
        else:
            self._backoff = min(BACKOFF_MAX, self._backoff * 2)
        assert self._loop is not None
        self._timer = self._loop.call_later(self._backoff, self._resume)

    def _end_episode(self) -> None:
        """Accepting worked: the episode ends once it keeps working for `EPISODE_QUIET`."""
        if not self._backoff or self._quiet_timer is not None or self._loop is None:
            return
        self._recovered = time.monotonic()
        self._quiet_timer = self._loop.call_later(EPISODE_QUIET, self._close_episode)

    def _close_episode(self) -> None:
        self._quiet_timer = None
        started, refused_before, name = self._episode
        self._backoff = 0.0
        log.warning(
            "accept (pid %d): accepting again after %.1fs; %d attempts refused (%s)",
            os.getpid(),
            self._recovered - started,
            self.refused - refused_before,
            name,
        )
