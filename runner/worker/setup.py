"""A freshly forked worker's setup, in one ordered function: leave the master's signal
handlers and descriptors behind, take its own `--reuse-port` sockets, set `--umask`, drop to
`--user`/`--group` (after every bind), then serve."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from types import FrameType
from typing import NoReturn

from ..errors import EXIT_FAILURE, EXIT_OK
from ..proctitle import set_title
from ..sockets import reuseport
from . import privileges
from .process import WorkerContext, run_worker


def run_forked_worker(
    ctx: WorkerContext, inherited_fds: list[int], master_signals: tuple[str, ...]
) -> NoReturn:
    """In a child just forked by the master: set up (see the module), serve, and exit with
    the worker's code (never returns). The master has already closed what it alone owns."""
    code = EXIT_FAILURE
    try:
        set_title(f"worker {ctx.worker_id}")
        signal.set_wakeup_fd(-1)
        for name in master_signals:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        # Until the worker's loop takes over there is nothing to drain: leave quietly.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, _exit_quietly)
        for fd in inherited_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        ctx.sockets = reuseport.worker_sockets(ctx.sockets, ctx.settings.backlog)
        if ctx.settings.umask is not None:
            os.umask(ctx.settings.umask)
        identity = privileges.resolve(ctx.settings.user, ctx.settings.group)
        if identity is not None:
            privileges.drop(identity)
        code = run_worker(ctx)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_OK)
