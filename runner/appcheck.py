"""Before the master announces anything, load the app once in a throwaway child, exactly as a
worker will (as `--check` does): a wrong MODULE:ATTR, a missing attribute or an app that
raises is then one error line and exit 3 (or 2 for a `ConfigurationError`), with no
"Listening" or "booting worker" line before it. The child leaves the master's memory
untouched (no module imported there, no loop, no thread), so forking workers stays safe."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sys
import time

from . import lifecycle
from .errors import EXIT_APP_LOAD, AppLoadError, RunnerError, UsageError
from .settings.options import Settings
from .worker import privileges
from .worker.appload import load_application
from .worker.loops import loop_factory

LOAD_TIMEOUT = 60.0
"""Seconds the app may take to load (a worker gets as long to be ready)."""


def check_app_loads(settings: Settings, timeout: float = LOAD_TIMEOUT) -> None:
    """Raise the `AppLoadError` or `UsageError` a worker would meet loading the app."""
    read_fd, write_fd = os.pipe()
    master_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        os.close(read_fd)
        lifecycle.set_parent_death_signal()
        if os.getppid() != master_pid:
            os._exit(1)
        _child(settings, write_fd)
    os.close(write_fd)
    try:
        report = _read_report(read_fd, timeout)
    finally:
        os.close(read_fd)
    if report is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if report is None:
        raise AppLoadError(f"loading {settings.app} took longer than {timeout:g} s")
    if not report:
        raise AppLoadError(f"loading {settings.app} killed the process that tried it")
    outcome = json.loads(report)
    if outcome["code"] == 0:
        return
    error = UsageError if outcome["code"] == UsageError.code else AppLoadError
    raise error(outcome["message"])


def _read_report(fd: int, timeout: float) -> bytes | None:
    """Everything the child writes until it exits; None if that takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(settings: Settings, write_fd: int) -> None:
    """Load the app, write `{"code", "message"}` to `write_fd`, and exit without cleanup."""
    outcome: dict[str, object] = {"code": 0, "message": ""}
    try:
        identity = privileges.resolve(settings.user, settings.group)
        if identity is not None:
            privileges.drop(identity)  # import as the workers will
        os.environ[lifecycle.ENV_POOLS_CONFIG] = settings.pools_json()
        with asyncio.Runner(loop_factory=loop_factory(settings.loop)) as runner:
            runner.run(load_application(settings.app, settings.app_dir, settings.factory))
    except RunnerError as exc:
        outcome = {"code": exc.code, "message": str(exc)}
    except BaseException as exc:
        outcome = {"code": EXIT_APP_LOAD, "message": f"loading {settings.app} failed: {exc!r}"}
    try:
        os.write(write_fd, json.dumps(outcome).encode())
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)
