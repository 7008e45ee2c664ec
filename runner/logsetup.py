"""Logging for the master and its workers: one stderr format with the pid, the access log on
or off, and the config file's `[logging]` table (a `logging.config.dictConfig` dictionary)."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

from .errors import UsageError

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
ACCESS_LOGGER = "tornado.access"


def setup_logging(
    level: str,
    access_log: bool,
    dict_config: dict[str, Any] | None = None,
    raw_access: bool = False,
) -> None:
    """Configure the root logger on stderr; raise `UsageError` if `dict_config` is invalid.

    `raw_access`: access lines are written as they are (a chosen format or JSON), without
    the pid and level prefix of the other lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    access = logging.getLogger(ACCESS_LOGGER)
    access.disabled = not access_log
    access.setLevel(logging.INFO if access_log else logging.WARNING)
    for old in list(access.handlers):
        access.removeHandler(old)
    access.propagate = not raw_access
    if raw_access:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(plain)
    if dict_config:
        config = {"disable_existing_loggers": False, **dict_config}
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"[logging] table in the config file is invalid: {message}") from None


def reopen_log_files() -> None:
    """Reopen every file handler (USR1, after logrotate moved the files)."""
    for logger in [logging.getLogger(), *_all_loggers()]:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.acquire()
                try:
                    handler.close()
                    handler.stream = handler._open()
                finally:
                    handler.release()


def _all_loggers() -> list[logging.Logger]:
    return [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
