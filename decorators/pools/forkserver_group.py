"""Imported only by a process pool's forkserver (as its preload): move the forkserver, and so
every pool process it forks, into a process group of its own.

A supervisor that stops a program by signalling its whole process group (supervisord's
`stopasgroup=true`, a terminal's Ctrl-C) then reaches the master and its web workers but not
the pool processes, which finish the calls the draining workers still wait for. They cannot
outlive their web worker: the forkserver exits when the worker that owns it does, a pool's
zygote has asked for SIGKILL when the forkserver dies and each pool process for SIGKILL when
its zygote dies (see `offload.zygote`).
"""

from __future__ import annotations

import contextlib
import os

with contextlib.suppress(OSError):
    os.setpgid(0, 0)
