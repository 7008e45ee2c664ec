"""The fast server's accept loop: each listening socket is watched by the event loop and
every queued connection is accepted and handed to `accepted(sock, address)`."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from ...sockets import reuseport
from .state import current_loop

log = logging.getLogger("tornado_run.fast")

ACCEPT_BATCH = 128
"""Connections accepted per readiness event (the loop calls again while more wait)."""
BACKOFF_SECONDS = 1.0
"""Pause after running out of file descriptors, instead of spinning on a readable socket."""
_OUT_OF_FILES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class AcceptLoop:
    """Accepts on listening sockets until stopped."""

    def __init__(self, accepted: Callable[[socket.socket, Any], None]) -> None:
        self.accepted = accepted
        self.sockets: dict[int, socket.socket] = {}

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        loop = current_loop()
        for sock in sockets:
            sock.setblocking(False)
            self.sockets[sock.fileno()] = sock
            loop.add_reader(sock.fileno(), self._ready, sock)

    def _ready(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FILES:
                    self._back_off(sock, exc)
                    return
                raise
            self.accepted(conn, address)

    def _back_off(self, sock: socket.socket, exc: OSError) -> None:
        log.warning("accept() failed (%s); pausing %gs", exc.strerror, BACKOFF_SECONDS)
        loop = current_loop()
        fd = sock.fileno()
        loop.remove_reader(fd)
        loop.call_later(BACKOFF_SECONDS, self._resume, sock, fd)

    def _resume(self, sock: socket.socket, fd: int) -> None:
        if self.sockets.get(fd) is sock:
            current_loop().add_reader(fd, self._ready, sock)

    def stop(self, accept_queued: bool = True) -> None:
        """Accept what is already queued (unless told not to), stop watching the sockets
        and close them."""
        loop = current_loop()
        for fd, sock in list(self.sockets.items()):
            if accept_queued:  # own --reuse-port sockets would lose their queue
                reuseport.accept_queued(sock, self.accepted)
            loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()
