"""Value parsers: each turns a raw value (a string from the command line or the environment,
or a TOML value) into its typed value, or raises `BadValue` saying what is allowed."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path

from ..control.metrics import parse_address
from ..errors import BadValue
from ..sockets.binding import BIND_FORMS, BindSpec, parse_bind
from ..worker.accesslog import ATOMS, unknown_atom
from ..worker.privileges import parse_umask

MAX_WORKERS = 1024
LOOPS = ("auto", "asyncio", "uvloop")
HTTP_SERVERS = ("auto", "fast", "tornado")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CERT_REQS = ("none", "optional", "required")
TLS_VERSIONS = ("1.2", "1.3")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_APP_SPEC = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_app_spec(text: str) -> bool:
    """True for MODULE:ATTR with dotted Python names on both sides (no empty parts)."""
    return _APP_SPEC.fullmatch(text) is not None


def _text(raw: object, allowed: str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadValue(allowed)
    return str(raw)


def _number(raw: object, allowed: str) -> float:
    """A finite number >= 0 from a string, int or float (not a bool)."""
    try:
        value = float(_text(raw, allowed))
    except ValueError:
        raise BadValue(allowed) from None
    if not math.isfinite(value) or value < 0:
        raise BadValue(allowed)
    return value


def parse_workers(raw: object) -> int | str:
    allowed = f"use 'auto' or a whole number from 1 to {MAX_WORKERS}"
    text = _text(raw, allowed).lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise BadValue(allowed)
    return int(text)


def parse_bind_list(raw: object) -> tuple[BindSpec, ...]:
    allowed = BIND_FORMS
    if isinstance(raw, list):
        items = [str(item) if isinstance(item, str) else "" for item in raw]
    elif isinstance(raw, str):
        items = raw.split(",")
    else:
        raise BadValue(allowed)
    items = [item.strip() for item in items]
    if not items or any(not item for item in items):
        raise BadValue(allowed)
    return tuple(parse_bind(item) for item in items)


def choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    """One of `choices`, case-insensitive."""

    def parse(raw: object) -> str:
        allowed = "use one of: " + ", ".join(choices)
        text = _text(raw, allowed).lower()
        if text not in choices:
            raise BadValue(allowed)
        return text

    return parse


def seconds(positive: bool) -> Callable[[object], float]:
    """A number of seconds, > 0 when `positive`, else >= 0."""
    allowed = "use a number of seconds " + ("> 0" if positive else ">= 0")

    def parse(raw: object) -> float:
        value = _number(raw, allowed)
        if positive and value == 0:
            raise BadValue(allowed)
        return value

    return parse


def off_or_number(unit: str) -> Callable[[object], float]:
    """A number of `unit` >= 0 (0: off)."""

    def parse(raw: object) -> float:
        return _number(raw, f"use a number of {unit} >= 0 (0 turns it off)")

    return parse


def parse_count(raw: object) -> int:
    """A whole number >= 0 (0: off)."""
    allowed = "use a whole number >= 0 (0 turns it off)"
    value = _number(raw, allowed)
    if not value.is_integer():
        raise BadValue(allowed)
    return int(value)


def parse_positive_count(raw: object) -> int:
    """A whole number >= 1."""
    allowed = "use a whole number >= 1"
    value = _number(raw, allowed)
    if not value.is_integer() or value < 1:
        raise BadValue(allowed)
    return int(value)


def parse_backlog(raw: object) -> int:
    allowed = "use a whole number from 1 to 65535"
    text = _text(raw, allowed)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise BadValue(allowed)
    return int(text)


def parse_size(raw: object) -> int:
    allowed = "use a number of bytes >= 1, optionally with K, M or G (e.g. 10M)"
    match = re.fullmatch(r"(\d+)\s*([kmg]?)i?b?", _text(raw, allowed).lower())
    if not match:
        raise BadValue(allowed)
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if value < 1:
        raise BadValue(allowed)
    return value


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    allowed = "use true or false (also 1/0, yes/no, on/off)"
    text = _text(raw, allowed).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadValue(allowed)


def parse_path_or_none(raw: object) -> Path | None:
    if not isinstance(raw, str):
        raise BadValue("use a file path (a string)")
    return Path(raw).expanduser() if raw.strip() else None


def parse_path_text(raw: object) -> str | None:
    """A file path kept as text; empty for the default."""
    if not isinstance(raw, str):
        raise BadValue("use a file path (a string)")
    return raw.strip() or None


def parse_text_or_none(raw: object) -> str | None:
    """Any text; empty for the default."""
    if not isinstance(raw, str):
        raise BadValue("use a string")
    return raw.strip() or None


def parse_dir(raw: object) -> Path:
    if not isinstance(raw, str) or not raw.strip():
        raise BadValue("use a directory path (a string)")
    return Path(raw).expanduser()


def parse_networks(raw: object) -> tuple[str, ...]:
    allowed = "use '*' or a comma-separated list of IP addresses or networks (e.g. 10.0.0.0/8)"
    if isinstance(raw, list):
        items = [item.strip() if isinstance(item, str) else "" for item in raw]
    elif isinstance(raw, str):
        items = [item.strip() for item in raw.split(",")]
    else:
        raise BadValue(allowed)
    if not items or any(not item for item in items):
        raise BadValue(allowed)
    if "*" in items:
        return ("*",)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise BadValue(allowed) from None
    return tuple(items)


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
    return str(raw).strip() or None


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


def parse_access_log_format(raw: object) -> str | None:
    """A format of gunicorn's `%(x)s` atoms; empty for Tornado's own line."""
    if not isinstance(raw, str):
        raise BadValue("use a string of %(x)s atoms, e.g. '%(h)s \"%(r)s\" %(s)s'")
    if not raw.strip():
        return None
    bad = unknown_atom(raw)
    if bad is not None:
        atoms = ", ".join(f"%({name})s" for name in ATOMS)
        raise BadValue(f"unknown atom {bad}; use {atoms}")
    return raw


def _items(raw: object, allowed: str) -> list[str]:
    """The items of a TOML array or a comma-separated string, none empty."""
    if isinstance(raw, list):
        items = [item.strip() if isinstance(item, str) else "" for item in raw]
    elif isinstance(raw, str):
        items = [item.strip() for item in raw.split(",")]
    else:
        raise BadValue(allowed)
    if not items or any(not item for item in items):
        raise BadValue(allowed)
    return items


def parse_dir_list(raw: object) -> tuple[Path, ...]:
    """Existing directories (a list, or comma-separated); empty for none."""
    allowed = "use existing directories (a list, or comma-separated)"
    if raw == [] or (isinstance(raw, str) and not raw.strip()):
        return ()  # none: --app-dir
    paths = tuple(Path(item).expanduser() for item in _items(raw, allowed))
    for path in paths:
        if not path.is_dir():
            raise BadValue(f"{path} is not a directory; {allowed}")
    return paths


def parse_pattern_list(raw: object) -> tuple[str, ...]:
    """Glob patterns such as *.py or templates/*.html (a list, or comma-separated)."""
    return tuple(_items(raw, "use glob patterns such as '*.html' (a list, or comma-separated)"))
