"""The launcher's options: one table drives the command line, the `[server]` table of the
config file and the `TORNADO_RUN_<NAME>` environment variables, so all three stay in step.

Each option has a parser that turns a raw value (a string from the command line or the
environment, or a TOML value) into its typed value, or raises `BadValue` saying what is allowed.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadValue
from ..sockets.binding import BindSpec, parse_bind
from .prod_options import ROWS as PROD_ROWS

MAX_WORKERS = 1024
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class Option:
    """One launcher option. `name` is the `[server]` key; the flag and env var derive from it."""

    name: str
    parse: Callable[[object], Any]
    default: Any
    help: str
    metavar: str = ""
    is_flag: bool = False  # a boolean: --name / --no-name on the command line
    repeatable: bool = False  # --bind may be given several times

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "TORNADO_RUN_" + self.name.upper()


def _text(raw: object, allowed: str) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadValue(allowed)
    return str(raw)


def parse_workers(raw: object) -> int | str:
    allowed = f"use 'auto' or a whole number from 1 to {MAX_WORKERS}"
    text = _text(raw, allowed).lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise BadValue(allowed)
    return int(text)


def parse_bind_list(raw: object) -> tuple[BindSpec, ...]:
    allowed = "use HOST:PORT, [IPv6]:PORT, unix:PATH[?mode=0660] or fd://N"
    if isinstance(raw, list):
        items = [str(item) if isinstance(item, str) else "" for item in raw]
    elif isinstance(raw, str):
        items = [part for part in raw.split(",")]
    else:
        raise BadValue(allowed)
    items = [item.strip() for item in items]
    if not items or any(not item for item in items):
        raise BadValue(allowed)
    return tuple(parse_bind(item) for item in items)


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        allowed = "use one of: " + ", ".join(choices)
        text = _text(raw, allowed).lower()
        if text not in choices:
            raise BadValue(allowed)
        return text

    return parse


def _seconds(minimum_exclusive: bool) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        allowed = "use a number of seconds " + ("> 0" if minimum_exclusive else ">= 0")
        try:
            value = float(_text(raw, allowed))
        except ValueError:
            raise BadValue(allowed) from None
        if not math.isfinite(value) or value < 0 or (minimum_exclusive and value == 0):
            raise BadValue(allowed)
        return value

    return parse


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


OPTIONS: tuple[Option, ...] = (
    Option("workers", parse_workers, 1, "worker processes: N or 'auto' (usable cores)", "N|auto"),
    Option(
        "bind",
        parse_bind_list,
        (parse_bind("127.0.0.1:8000"),),
        "listen on HOST:PORT, [IPv6]:PORT, unix:PATH[?mode=0660] or fd://N (repeatable)",
        "ADDRESS",
        repeatable=True,
    ),
    Option("loop", _choice(LOOPS), "auto", "event loop (auto: uvloop if found)", "|".join(LOOPS)),
    Option("graceful_timeout", _seconds(False), 30.0, "seconds a stopping worker may drain", "S"),
    Option("backlog", parse_backlog, 2048, "listen backlog of bound sockets", "N"),
    Option("pid", parse_path_or_none, None, "write the master's pid to FILE", "FILE"),
    Option("log_level", _choice(LOG_LEVELS), "info", "log level", "|".join(LOG_LEVELS)),
    Option("access_log", parse_bool, False, "log every request (off by default)", is_flag=True),
    Option(
        "proxy_headers",
        parse_bool,
        False,
        "use X-Forwarded-For/-Proto and X-Real-Ip from --forwarded-allow-ips peers",
        is_flag=True,
    ),
    Option(
        "forwarded_allow_ips",
        parse_networks,
        ("127.0.0.1", "::1"),
        "peers whose forwarded headers are trusted ('*' for all)",
        "IPS",
    ),
    Option("idle_timeout", _seconds(True), 60.0, "close connections idle this long", "S"),
    Option("body_timeout", _seconds(True), 60.0, "limit for reading a request body", "S"),
    Option("max_body_size", parse_size, 10 << 20, "largest request body (e.g. 10M)", "BYTES"),
    Option("factory", parse_bool, False, "MODULE:ATTR is an app factory", is_flag=True),
    Option("app_dir", parse_dir, Path("."), "directory put first on sys.path", "DIR"),
    Option(
        "no_master",
        parse_bool,
        False,
        "serve in this process: no master, no fork (e.g. supervisord fcgi-program)",
        is_flag=True,
    ),
)

# The production master's options (issue 5): rows kept in prod_options.py.
OPTIONS += tuple(Option(n, p, d, h, m, is_flag=f) for n, p, d, h, m, f in PROD_ROWS)

OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}
