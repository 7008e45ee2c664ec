"""Options of the production master (issue 5): heartbeat timeout, blocked-loop warnings,
recycling, balanced sockets, status/metrics endpoints, privilege drop and --reload.

`ROWS` holds (name, parser, default, help, metavar, is_flag) for `options.OPTIONS`, which wraps
each row in an `Option`; the parsers raise `BadValue` saying what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..control.metrics import parse_address
from ..errors import BadValue, UsageError
from ..sockets import reuseport
from ..worker import privileges
from ..worker.privileges import parse_umask


def _number(raw: object, allowed: str) -> float:
    if isinstance(raw, bool):
        raise BadValue(allowed)
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadValue(allowed) from None
    if not math.isfinite(value) or value < 0:
        raise BadValue(allowed)
    return value


def parse_count(raw: object) -> int:
    """A whole number >= 0 (0: off)."""
    allowed = "use a whole number >= 0 (0 turns it off)"
    value = _number(raw, allowed)
    if not value.is_integer():
        raise BadValue(allowed)
    return int(value)


def parse_off_or_number(unit: str) -> Callable[[object], float]:
    """A number of `unit` >= 0 (0: off)."""

    def parse(raw: object) -> float:
        return _number(raw, f"use a number of {unit} >= 0 (0 turns it off)")

    return parse


def parse_seconds_positive(raw: object) -> float:
    """A number of seconds > 0."""
    value = _number(raw, "use a number of seconds > 0")
    if value == 0:
        raise BadValue("use a number of seconds > 0")
    return value


def parse_address_or_off(raw: object) -> str | None:
    """HOST:PORT, or an empty string for off."""
    allowed = "use HOST:PORT (e.g. 127.0.0.1:9100), or an empty value for off"
    if not isinstance(raw, str):
        raise BadValue(allowed)
    if not raw.strip():
        return None
    try:
        parse_address(raw.strip())
    except ValueError:
        raise BadValue(allowed) from None
    return raw.strip()


def parse_name_or_off(raw: object) -> str | None:
    """A user or group name or numeric id (resolved when the master starts)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise BadValue("use a name or a numeric id")
    text = str(raw).strip()
    return text or None


def parse_umask_value(raw: object) -> int | None:
    """An octal umask such as 022; empty for: leave it as inherited."""
    if isinstance(raw, str) and not raw.strip():
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise BadValue("use an octal mask such as 022 or 0o027")
    try:
        return parse_umask(raw)
    except ValueError:
        raise BadValue("use an octal mask from 000 to 777, such as 022 or 0o027") from None


def parse_path_text(raw: object) -> str | None:
    """A file path; empty for the default."""
    if not isinstance(raw, str):
        raise BadValue("use a file path (a string)")
    return raw.strip() or None


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadValue("use true or false (also 1/0, yes/no, on/off)")


REUSE_PORT_DEFAULT = True
"""Chosen from the measured connection spread (README, production master section): balanced,
and as lossless on HUP, recycling and crashes as the shared socket (see socketsets.py)."""

ROWS: tuple[tuple[str, Callable[[object], Any], Any, str, str, bool], ...] = (
    ("timeout", parse_seconds_positive, 30.0,
     "kill (after a stack dump) a worker whose loop has not turned for S seconds", "S", False),
    ("block_warn", parse_off_or_number("milliseconds"), 0.0,
     "log the loop thread's stack when the loop is blocked longer than MS (0: off)", "MS", False),
    ("max_requests", parse_count, 0, "recycle a worker after N requests (0: off)", "N", False),
    ("max_requests_jitter", parse_count, 0, "add 0..J to each worker's --max-requests", "J",
     False),
    ("max_memory", parse_off_or_number("MiB"), 0.0,
     "recycle a worker whose RSS stays above MiB (0: off)", "MiB", False),
    ("max_lifetime", parse_off_or_number("seconds"), 0.0,
     "recycle a worker after S seconds (0: off)", "S", False),
    ("max_lifetime_jitter", parse_off_or_number("seconds"), 0.0,
     "add 0..S seconds to each worker's --max-lifetime", "S", False),
    ("reuse_port", _flag, REUSE_PORT_DEFAULT,
     "one SO_REUSEPORT listening socket per worker: the kernel balances connections (TCP binds)",
     "", True),
    ("metrics", parse_address_or_off, None,
     "serve Prometheus metrics of all workers on HOST:PORT from the master", "HOST:PORT", False),
    ("control", parse_path_text, None,
     "control socket for `tornado-run status` (default: PIDFILE.ctl or a runtime dir)", "PATH",
     False),
    ("user", parse_name_or_off, None, "workers run as USER (the master must be root)", "USER",
     False),
    ("group", parse_name_or_off, None, "workers run with GROUP", "GROUP", False),
    ("umask", parse_umask_value, None, "file mode creation mask for workers (octal)", "MASK",
     False),
    ("reload", _flag, False, "development: restart workers when a source file changes", "", True),
    ("preload", _flag, False,
     "import the app module in the master before forking (shared memory; HUP keeps that code)",
     "", True),
)  # fmt: skip


def validate(settings: Any) -> None:
    """Checks across values or against the system; raises UsageError with one line."""
    try:
        privileges.resolve(settings.user, settings.group)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if settings.max_requests_jitter and not settings.max_requests:
        raise UsageError(
            f"--max-requests-jitter {settings.max_requests_jitter}: needs --max-requests"
        )
    if settings.max_lifetime_jitter and not settings.max_lifetime:
        raise UsageError(
            f"--max-lifetime-jitter {settings.max_lifetime_jitter:g}: needs --max-lifetime"
        )
    if settings.preload and settings.reload:
        raise UsageError(
            "--reload with --preload: workers forked from a preloaded master keep its code; "
            "drop one of them"
        )
    if settings.reuse_port and not reuseport.supported() and not settings.no_master:
        raise UsageError("--reuse-port: this platform has no SO_REUSEPORT; drop the flag")
