"""A tiny request/response server that the master drives from its own loop, without threads.

The master must not own threads or an event loop before it forks, so the control socket and
the /metrics endpoint are served by `PollServer.service()`, which never blocks: the master
waits on `fileno()` (an epoll descriptor that turns readable whenever a client needs
attention) together with its other descriptors, then calls `service()`.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("tornado_run.pollserver")

Responder = Callable[[bytes], bytes | None]
"""Given the bytes received so far, return the whole response, or None to wait for more."""


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: memoryview | None = None


class PollServer:
    """Serve one short request per connection on `listener`, answering with `respond`.

    A client that sends more than `max_request` bytes or stays longer than `client_timeout`
    seconds is disconnected; at most `max_clients` are served at once (others wait in the
    listen backlog).
    """

    def __init__(
        self,
        listener: socket.socket,
        respond: Responder,
        *,
        max_request: int = 8192,
        client_timeout: float = 5.0,
        max_clients: int = 32,
    ) -> None:
        self.listener = listener
        self.respond = respond
        self.max_request = max_request
        self.client_timeout = client_timeout
        self.max_clients = max_clients
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._clients: dict[int, _Client] = {}

    def fileno(self) -> int:
        """A descriptor that is readable whenever `service()` has work to do."""
        return self._selector.fileno()

    def service(self) -> None:
        """Accept, read, answer and expire clients; returns at once, never blocks."""
        for key, events in self._selector.select(timeout=0):
            if key.data is None:
                self._accept()
            else:
                self._on_client(key.data, events)
        self._expire(time.monotonic())

    def close(self) -> None:
        """Disconnect every client and close the listener."""
        for client in list(self._clients.values()):
            self._drop(client)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self.listener)
        self.listener.close()
        self._selector.close()

    def close_sockets(self) -> None:
        """Close the listener and client sockets only (in a forked child: no epoll calls)."""
        for client in self._clients.values():
            client.sock.close()
        self._clients = {}
        self.listener.close()

    def _accept(self) -> None:
        while len(self._clients) < self.max_clients:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control/metrics accept failed: %s", exc)
                return
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + self.client_timeout)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)

    def _on_client(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_READ and client.outbox is None:
            self._read(client)
        elif events & selectors.EVENT_WRITE:
            self._write(client)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbox += data
        if len(client.inbox) > self.max_request:
            self._drop(client)
            return
        try:
            response = self.respond(bytes(client.inbox))
        except Exception:
            log.exception("control/metrics responder failed")
            self._drop(client)
            return
        if response is not None:
            client.outbox = memoryview(response)
            self._selector.modify(client.sock, selectors.EVENT_WRITE, client)
            self._write(client)

    def _write(self, client: _Client) -> None:
        assert client.outbox is not None
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(client.outbox)
        client.outbox = client.outbox[sent:]
        if not client.outbox:
            self._drop(client)

    def _expire(self, now: float) -> None:
        for client in list(self._clients.values()):
            if now >= client.deadline:
                self._drop(client)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
            self._clients.pop(fd, None)
        client.sock.close()
