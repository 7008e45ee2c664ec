"""The master's signals: handlers that only queue, and a self-pipe that wakes its poll.

A handler does nothing else, so the master acts on every signal from its own loop, where it
may fork, reap and log safely.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType

SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGCHLD")
_QUEUE_LIMIT = 32


class SignalQueue:
    """Queues the master's signals; `wake_fd` is readable once one arrived."""

    def __init__(self) -> None:
        self._queue: list[int] = []
        self.wake_fd, self._write_fd = os.pipe()

    @property
    def fds(self) -> list[int]:
        """Both ends of the self-pipe (a forked worker closes them)."""
        return [self.wake_fd, self._write_fd]

    def install(self) -> None:
        """Route every signal in `SIGNALS` to the queue and wake the pipe on each."""
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._write_fd, False)
        signal.set_wakeup_fd(self._write_fd)
        for name in SIGNALS:
            signal.signal(getattr(signal, name), self._on_signal)

    def uninstall(self) -> None:
        """Stop waking the pipe (at the master's exit)."""
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if len(self._queue) < _QUEUE_LIMIT:
            self._queue.append(signum)

    def clear_wake(self) -> None:
        """Empty the self-pipe after the poll saw it readable."""
        with contextlib.suppress(OSError):
            while os.read(self.wake_fd, 4096):
                pass

    def pop_names(self) -> list[str]:
        """The queued signals in arrival order, as lower-case names without SIG ("term")."""
        queued, self._queue = self._queue, []
        return [signal.Signals(signum).name[3:].lower() for signum in queued]
