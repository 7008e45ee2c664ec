"""What a child process must forget after `os.fork()` so its pools start fresh.

Pools themselves are dropped by the registry. The multiprocessing forkserver is per process
too: a child that inherited its parent's forkserver handle would try to `waitpid` a process
that is not its own, so the handle is reset and the child starts its own server on first use.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import threading
from multiprocessing import forkserver


def forget_inherited_children() -> None:
    """Drop the parent's multiprocessing children from this (forked) process's books.

    They are not our children: left listed, exit-time cleanup (pebble's, multiprocessing's)
    would terminate the parent's pool processes when this process exits.
    """
    children = getattr(multiprocessing.process, "_children", None)
    if isinstance(children, set):
        children.clear()


def forget_inherited_forkserver() -> None:
    """Make this (forked) process start its own forkserver when it next needs one."""
    server: object = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive_fd, int):
        # Our copy of the parent's "alive" pipe must not keep the parent's server running.
        with contextlib.suppress(OSError):
            os.close(alive_fd)
    for attribute in ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid"):
        setattr(server, attribute, None)
    if hasattr(server, "_inherited_fds"):
        server._inherited_fds = None
    if hasattr(server, "_lock"):
        server._lock = threading.Lock()
