"""Imported only by a process pool's forkserver (as its preload): move the forkserver, and so
every pool process it forks, into a process group of its own.

A supervisor that stops a program by signalling its whole process group (supervisord's
`stopasgroup=true`, a terminal's Ctrl-C) then reaches the master and its web workers but not
the pool processes, which finish the calls the draining workers still wait for. They cannot
outlive their web worker: the forkserver exits when the worker that owns it does, and each
pool process has asked for SIGKILL when the forkserver dies (see `pickling`).
"""

from __future__ import annotations

import contextlib
import os

with contextlib.suppress(OSError):
    os.setpgid(0, 0)
