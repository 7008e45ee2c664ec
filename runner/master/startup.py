"""What the master does once, before it forks the first worker: `--preload` and the check that
`--user` can read what workers will import."""

from __future__ import annotations

import logging
import sysconfig
import threading
from pathlib import Path

from ..settings.options import Settings
from ..worker import privileges
from ..worker.appload import add_app_dir, import_module

log = logging.getLogger("tornado_run.master")


def preload(settings: Settings) -> None:
    """`--preload`: import the app's module here, in the master, before any fork, so workers
    share its memory pages; they still resolve MODULE:ATTR (and call a factory) themselves.

    Raises AppLoadError/UsageError like a worker's import would.
    """
    threads_before = threading.active_count()
    add_app_dir(settings.app_dir)
    import_module(settings.app.split(":", 1)[0], settings.app_dir)
    if threading.active_count() > threads_before:
        log.warning(
            "--preload: importing %s started threads in the master; threads do not survive "
            "the fork into workers (start them in a --factory instead)",
            settings.app,
        )
    log.info(
        "--preload: %s imported in the master; HUP restarts workers on this code", settings.app
    )


def warn_unreadable_paths(settings: Settings) -> None:
    """Log a warning for each folder `--user` cannot read that workers import from."""
    identity = privileges.resolve(settings.user, settings.group)
    if identity is None:
        return
    paths = [Path(sysconfig.get_paths()["stdlib"]), Path(settings.app_dir)]
    for problem in privileges.unreachable_paths(identity, paths):
        log.warning(
            "--user %s cannot read %s: imports in workers will fail", identity.name, problem
        )
