"""Before the master announces anything, load the app once in a throwaway child, exactly as a
worker will (as `--check` does): a wrong MODULE:ATTR, a missing attribute or an app that
raises is then one error line and exit 3 (or 2 for a `ConfigurationError`), with no
"Listening" or "booting worker" line before it. The child leaves the master's memory
untouched (no module imported there, no loop, no thread), so forking workers stays safe."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from . import lifecycle
from .errors import EXIT_APP_LOAD, AppLoadError, RunnerError, UsageError
from .settings.options import Settings
from .worker import privileges
from .worker.appload import load_application
from .worker.loops import loop_factory


def check_app_loads(settings: Settings) -> None:
    """Raise the `AppLoadError` or `UsageError` a worker would meet loading the app."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        os.close(read_fd)
        _child(settings, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        report = reader.read()
    os.waitpid(pid, 0)
    if not report:
        raise AppLoadError(f"loading {settings.app} killed the process that tried it")
    outcome = json.loads(report)
    if outcome["code"] == 0:
        return
    error = UsageError if outcome["code"] == UsageError.code else AppLoadError
    raise error(outcome["message"])


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
