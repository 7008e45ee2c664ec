"""The launcher's options, each declared once: as a field of `Settings` whose metadata holds
its parser, help and metavar. The command line (`--name`), the config file's `[server]` table
(`name = ...`) and the environment (`TORNADO_RUN_NAME`) are all generated from these fields,
so the three stay in step and every default is written in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..sockets.binding import BindSpec, parse_bind
from . import parsers as p

REUSE_PORT_DEFAULT = True
"""Chosen from the measured connection spread (docs/launcher.md, balanced sockets): balanced,
and as lossless on HUP, recycling and crashes as the shared socket (see listener_sets.py)."""


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
    short: str = ""  # a one-letter form, e.g. -w (gunicorn's)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        """The command-line forms: the short one (if any), then `--name`."""
        return (self.short, self.flag) if self.short else (self.flag,)

    @property
    def env(self) -> str:
        return "TORNADO_RUN_" + self.name.upper()


def option(
    default: Any,
    parse: Callable[[object], Any],
    help: str,
    metavar: str = "",
    *,
    is_flag: bool = False,
    repeatable: bool = False,
    short: str = "",
) -> Any:
    """Declare a `Settings` field that is also a launcher option."""
    spec = {"parse": parse, "help": help, "metavar": metavar, "is_flag": is_flag}
    return field(
        default=default,
        metadata={"option": {**spec, "repeatable": repeatable, "short": short}},
    )


def flag(default: bool, help: str) -> Any:
    """Declare a boolean option: `--name` / `--no-name`."""
    return option(default, p.parse_bool, help, is_flag=True)


@dataclass(frozen=True)
class Settings:
    """Everything a master and its workers need, validated."""

    app: str
    workers: int | str = option(
        1, p.parse_workers, "worker processes: N or 'auto' (usable cores)", "N|auto", short="-w"
    )
    bind: tuple[BindSpec, ...] = option(
        (parse_bind("127.0.0.1:8000"),),
        p.parse_bind_list,
        "listen on HOST:PORT, [IPv6]:PORT, unix:PATH[?mode=0660&group=NAME] or fd://N (repeatable)",
        "ADDRESS",
        repeatable=True,
        short="-b",
    )
    loop: str = option(
        "auto", p.choice(p.LOOPS), "event loop (auto: uvloop if found)", "|".join(p.LOOPS)
    )
    http: str = option(
        "auto",
        p.choice(p.HTTP_SERVERS),
        "HTTP/1.1 server: fast (httptools), tornado (Tornado's HTTPServer), "
        "auto (fast if httptools imports)",
        "|".join(p.HTTP_SERVERS),
    )
    graceful_timeout: float = option(
        30.0, p.seconds(positive=False), "seconds a stopping worker may drain", "S"
    )
    backlog: int = option(2048, p.parse_backlog, "listen backlog of bound sockets", "N")
    pid: Path | None = option(None, p.parse_path_or_none, "write the master's pid to FILE", "FILE")
    log_level: str = option("info", p.choice(p.LOG_LEVELS), "log level", "|".join(p.LOG_LEVELS))
    access_log: bool = flag(False, "log every request")
    access_log_format: str | None = option(
        None,
        p.parse_access_log_format,
        "access log line of gunicorn's atoms, e.g. '%(h)s \"%(r)s\" %(s)s %(b)s %(D)s' "
        "(turns --access-log on; none: Tornado's own line)",
        "FORMAT",
    )
    access_log_json: bool = flag(
        False, "access log as one JSON object per line (turns --access-log on)"
    )
    proxy_headers: bool = flag(
        False, "use X-Forwarded-For/-Proto and X-Real-Ip from --forwarded-allow-ips peers"
    )
    forwarded_allow_ips: tuple[str, ...] = option(
        ("127.0.0.1", "::1"),
        p.parse_networks,
        "peers whose forwarded headers are trusted ('*' for all)",
        "IPS",
    )
    idle_timeout: float = option(
        60.0, p.seconds(positive=True), "close connections idle this long", "S"
    )
    body_timeout: float = option(
        60.0, p.seconds(positive=True), "limit for reading a request body", "S"
    )
    max_body_size: int = option(10 << 20, p.parse_size, "largest request body (e.g. 10M)", "BYTES")
    max_header_size: int = option(
        64 << 10,
        p.parse_size,
        "largest request header block (larger: 431; a longer URI: 414)",
        "BYTES",
    )
    max_connections: int = option(
        1000,
        p.parse_positive_count,
        "open connections per worker; past it the worker stops accepting until one closes",
        "N",
    )
    factory: bool = flag(False, "MODULE:ATTR is an app factory")
    app_dir: Path = option(Path("."), p.parse_dir, "directory put first on sys.path", "DIR")
    no_master: bool = flag(
        False, "serve in this process: no master, no fork (e.g. supervisord fcgi-program)"
    )
    timeout: float = option(
        30.0,
        p.seconds(positive=True),
        "kill (after a stack dump) a worker whose loop has not turned for S seconds",
        "S",
    )
    block_warn: float = option(
        0.0,
        p.off_or_number("milliseconds"),
        "log the loop thread's stack when the loop is blocked longer than MS (0: off)",
        "MS",
    )
    max_requests: int = option(0, p.parse_count, "recycle a worker after N requests (0: off)", "N")
    max_requests_jitter: int = option(
        0, p.parse_count, "add 0..J to each worker's --max-requests", "J"
    )
    max_memory: float = option(
        0.0, p.off_or_number("MiB"), "recycle a worker whose RSS stays above MiB (0: off)", "MiB"
    )
    max_lifetime: float = option(
        0.0, p.off_or_number("seconds"), "recycle a worker after S seconds (0: off)", "S"
    )
    max_lifetime_jitter: float = option(
        0.0, p.off_or_number("seconds"), "add 0..S seconds to each worker's --max-lifetime", "S"
    )
    reuse_port: bool = flag(
        REUSE_PORT_DEFAULT,
        "one SO_REUSEPORT listening socket per worker: the kernel balances connections (TCP binds)",
    )
    metrics: str | None = option(
        None,
        p.parse_address_or_off,
        "serve Prometheus metrics of all workers on HOST:PORT from the master",
        "HOST:PORT",
    )
    control: str | None = option(
        None,
        p.parse_path_text,
        "control socket for `tornado-run status` (default: PIDFILE.ctl or a runtime dir)",
        "PATH",
    )
    user: str | None = option(
        None, p.parse_name_or_off, "workers run as USER (the master must be root)", "USER"
    )
    group: str | None = option(None, p.parse_name_or_off, "workers run with GROUP", "GROUP")
    umask: int | None = option(
        None, p.parse_umask_value, "file mode creation mask for workers (octal)", "MASK"
    )
    reload: bool = flag(False, "development: restart workers when a source file changes")
    reload_dir: tuple[Path, ...] = option(
        (),
        p.parse_dir_list,
        "--reload watches DIR (repeatable; none: --app-dir)",
        "DIR",
        repeatable=True,
    )
    reload_include: tuple[str, ...] = option(
        ("*.py",),
        p.parse_pattern_list,
        "--reload watches files whose name matches the glob PATTERN (repeatable)",
        "PATTERN",
        repeatable=True,
    )
    reload_exclude: tuple[str, ...] = option(
        (".*", ".py[cod]", ".sw.*", "~*"),
        p.parse_pattern_list,
        "--reload ignores files and folders whose name matches PATTERN (repeatable)",
        "PATTERN",
        repeatable=True,
    )
    preload: bool = flag(
        False,
        "import the app module in the master before forking (shared memory; HUP keeps that code)",
    )
    certfile: Path | None = option(
        None,
        p.parse_path_or_none,
        "serve TLS on every --bind: PEM certificate chain (leaf first; each worker loads it "
        "at start, so HUP rotates it)",
        "FILE",
    )
    keyfile: Path | None = option(
        None,
        p.parse_path_or_none,
        "PEM private key of --certfile (default: in the certfile)",
        "FILE",
    )
    ca_certs: Path | None = option(
        None,
        p.parse_path_or_none,
        "PEM CA certificates that client certificates must chain to",
        "FILE",
    )
    cert_reqs: str = option(
        "none", p.choice(p.CERT_REQS), "client certificates asked for", "|".join(p.CERT_REQS)
    )
    ciphers: str | None = option(
        None, p.parse_text_or_none, "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)", "LIST"
    )
    tls_min_version: str = option(
        "1.2", p.choice(p.TLS_VERSIONS), "lowest TLS version accepted", "|".join(p.TLS_VERSIONS)
    )
    # Not options: what the loader learned while reading the sources above.
    bind_given: bool = False  # --bind came from some source (else systemd sockets may be used)
    check: bool = False
    config_file: Path | None = None
    pools: dict[str, Any] = field(default_factory=dict)
    logging: dict[str, Any] | None = None

    def pools_json(self) -> str:
        """The `[pools]` table as JSON for the workers' environment."""
        return json.dumps(self.pools, default=str)


def _options() -> tuple[Option, ...]:
    return tuple(
        Option(name=f.name, default=f.default, **f.metadata["option"])
        for f in fields(Settings)
        if "option" in f.metadata and f.default is not MISSING
    )


OPTIONS: tuple[Option, ...] = _options()
"""Every launcher option, in `--help` order."""
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}
