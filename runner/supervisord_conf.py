"""`tornado-run supervisord-conf`: print a supervisord section that runs an app correctly.

Two modes:

- ``program``: supervisord runs the tornado-run master, which binds and forks its workers.
  TERM goes to the master alone, which drains its workers and their pools in order;
  ``stopwaitsecs`` is derived from the graceful timeout so supervisord never kills a master
  that is still draining, and if it must, the SIGKILL goes to the whole process group.
- ``fcgi``: supervisord owns the listening socket and hands it as fd 0 to ``numprocs``
  single-process servers (``--no-master --bind fd://0``); supervisord is the master.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .errors import BadValue, RunnerError, UsageError
from .master.crashes import CRASH_LIMIT, CRASH_WINDOW
from .settings.loading import read_config_file
from .settings.options import OPTIONS_BY_NAME
from .settings.parsers import is_app_spec
from .sockets import binding as sockets
from .sockets.binding import BindSpec

PROG = "tornado-run supervisord-conf"
DEFAULT_GRACEFUL_TIMEOUT = float(OPTIONS_BY_NAME["graceful_timeout"].default)
STOP_MARGIN_SECONDS = 5
"""Added to the graceful timeout: time for the forced stop, pool shutdown and exit."""
FCGI_STARTSECS = 5
"""A --no-master process has no crash-loop detection of its own: supervisord is the master."""
BOOT_MARGIN_SECONDS = 5
DEFAULT_STARTRETRIES = 2
DEFAULT_LOG_DIR = "/var/log/tornado-run"
LOG_MAXBYTES = "50MB"
LOG_BACKUPS = 10
SOCKET_BACKLOG = 2048

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line instead of usage plus message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_bind(text: str) -> BindSpec:
    """Validate a tornado-run bind address with the runner's own parser; raise UsageError."""
    try:
        return sockets.parse_bind(text)
    except BadValue as exc:
        raise UsageError(f"--bind {text!r}: {exc}") from None


def supervisor_socket(
    spec: BindSpec, directory: str | None, user: str | None
) -> tuple[str, list[str]]:
    """supervisord's `socket=` URL for an address it should own, and extra `socket_*` lines.
    A relative unix path is taken from the program's directory (else the current one); a
    `group=` becomes `socket_owner=USER:GROUP`, which needs the program's `--user`."""
    if spec.kind == "unix":
        path = os.path.abspath(os.path.join(directory or os.getcwd(), spec.path))
        lines = [f"socket_mode=0{spec.mode:o}"]
        if spec.group and not user:
            raise UsageError(
                f"--bind {spec.text!r}: in fcgi mode supervisord owns the socket; group= "
                "needs --user for its socket_owner=USER:GROUP"
            )
        if spec.group:
            lines.append(f"socket_owner={user}:{spec.group}")
        return f"unix://{path}", lines
    if spec.kind != "tcp" or ":" in spec.host or not 1 <= spec.port <= 65535:
        raise UsageError(
            f"--bind {spec.text!r}: fcgi mode needs one IPv4-or-hostname HOST:PORT (port 1 to "
            "65535) or unix:PATH, which supervisord owns"
        )
    return f"tcp://{spec.host}:{spec.port}", []


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _option(name: str) -> Callable[[str], str]:
    """An argparse type that validates with tornado-run's own parser for option `name` and
    keeps the text, so the command line says exactly what the user wrote."""
    option = OPTIONS_BY_NAME[name]

    def check(text: str) -> str:
        try:
            option.parse(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
        return text

    return check


def build_parser() -> argparse.ArgumentParser:
    """The command line of `tornado-run supervisord-conf`."""
    parser = _Parser(
        prog=PROG,
        description="Print a supervisord [program:x] or [fcgi-program:x] section for an app. "
        "Arguments after `--` are passed to tornado-run unchanged.",
        epilog="examples:\n"
        f"  {PROG} myapp:application --workers auto --bind 127.0.0.1:8000\n"
        f"  {PROG} myapp:application --mode fcgi --numprocs 4 --bind 127.0.0.1:8000\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("app", help="MODULE:ATTR of the tornado.web.Application")
    parser.add_argument(
        "--mode",
        choices=("program", "fcgi"),
        default="program",
        help="program: supervisord runs the tornado-run master (default); fcgi: supervisord "
        "owns the socket and runs --numprocs single-process servers",
    )
    parser.add_argument("--name", default="tornado-run", help="program name (default: %(default)s)")
    parser.add_argument(
        "--workers", type=_option("workers"), metavar="N|auto", help="program mode only"
    )
    parser.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="HOST:PORT, unix:PATH or (program mode) fd://N; repeatable in program mode "
        "(default: 127.0.0.1:8000)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_option("graceful_timeout"),
        metavar="S",
        help=f"drain time; stopwaitsecs is this plus {STOP_MARGIN_SECONDS} (default: the "
        f"--config file's graceful_timeout, else {DEFAULT_GRACEFUL_TIMEOUT:g})",
    )
    parser.add_argument("--numprocs", type=_positive_int, metavar="N", help="fcgi mode (default 2)")
    parser.add_argument("--directory", metavar="DIR", help="working directory of the program")
    parser.add_argument("--app-dir", metavar="DIR", help="passed to tornado-run --app-dir")
    parser.add_argument("--config", metavar="FILE", help="passed to tornado-run --config")
    parser.add_argument("--user", help="run as USER (supervisord must run as root)")
    parser.add_argument(
        "--log-dir", metavar="DIR", default=DEFAULT_LOG_DIR, help="default: %(default)s"
    )
    parser.add_argument(
        "--startsecs",
        type=_non_negative_int,
        metavar="S",
        help="default: longer than tornado-run needs to detect a crash loop",
    )
    parser.add_argument(
        "--startretries", type=_non_negative_int, default=DEFAULT_STARTRETRIES, metavar="N"
    )
    parser.add_argument(
        "--environment", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument(
        "--executable",
        metavar="PATH",
        default=default_executable(),
        help="the tornado-run script (default: %(default)s)",
    )
    return parser


def default_executable() -> str:
    """The tornado-run script beside this interpreter (a virtualenv's bin/), else the bare name."""
    candidate = Path(sys.executable).parent / "tornado-run"
    return str(candidate) if candidate.exists() else "tornado-run"


def start_seconds(mode: str, workers: str | None) -> int:
    """Seconds before supervisord deems a start successful. In program mode this outlasts the
    master's crash-loop detection (CRASH_LIMIT deaths, each within CRASH_WINDOW of its boot;
    workers die in parallel), so its exit 3 happens while the start still counts as failed:
    supervisord then ends in FATAL after `startretries` instead of restarting it for ever."""
    if mode == "fcgi":
        return FCGI_STARTSECS
    count = int(workers) if workers and workers.isdigit() else 1  # auto: assume the worst
    rounds = math.ceil(CRASH_LIMIT / count)
    return math.ceil(rounds * CRASH_WINDOW) + BOOT_MARGIN_SECONDS


def stop_wait_seconds(graceful_timeout: float) -> int:
    """Seconds supervisord waits after TERM before SIGKILL: always above the graceful timeout."""
    return math.ceil(graceful_timeout) + STOP_MARGIN_SECONDS


def _graceful_timeout(args: argparse.Namespace) -> float:
    """The command line's value, else the --config file's, else tornado-run's default."""
    if args.graceful_timeout is not None:
        return float(args.graceful_timeout)
    if not args.config:
        return DEFAULT_GRACEFUL_TIMEOUT
    path = Path(args.directory or ".", args.config)
    try:
        raw = read_config_file(path)["server"].get("graceful_timeout")
        if raw is None:
            return DEFAULT_GRACEFUL_TIMEOUT
        return float(OPTIONS_BY_NAME["graceful_timeout"].parse(raw))
    except BadValue as exc:
        raise UsageError(f"--config {path}: graceful_timeout {raw!r}: {exc}") from None
    except RunnerError as exc:
        raise UsageError(str(exc)) from None


def _check(args: argparse.Namespace) -> list[BindSpec]:
    if not is_app_spec(args.app):
        raise UsageError(f"app {args.app!r}: allowed: MODULE:ATTR, e.g. myapp:application")
    if not _NAME_RE.match(args.name):
        raise UsageError(f"--name {args.name!r}: allowed: letters, digits, '_', '.', '-'")
    for item in args.environment:
        key, sep, _ = item.partition("=")
        if not sep or not _ENV_KEY_RE.match(key):
            raise UsageError(f"--environment {item!r}: allowed: KEY=VALUE")
    binds = [parse_bind(spec) for spec in args.bind] or [parse_bind("127.0.0.1:8000")]
    args.graceful_timeout = _graceful_timeout(args)
    if args.mode == "program":
        if args.numprocs not in (None, 1):
            raise UsageError(
                f"--numprocs {args.numprocs}: program mode runs one master; "
                "use --workers, or --mode fcgi for several processes"
            )
        return binds
    if args.workers is not None:
        raise UsageError(f"--workers {args.workers}: fcgi mode uses --numprocs instead")
    if len(binds) != 1:
        raise UsageError(
            f"--bind {' '.join(b.text for b in binds)!r}: fcgi mode needs exactly one address, "
            "which supervisord owns"
        )
    supervisor_socket(binds[0], args.directory, args.user)
    return binds


def _escape(value: str) -> str:
    """supervisord expands %(name)s in values, so a literal % must be doubled."""
    return value.replace("%", "%%")


def _command(args: argparse.Namespace, binds: list[BindSpec], extra: Sequence[str]) -> str:
    words = [args.executable, args.app]
    if args.mode == "program":
        words += ["--workers", args.workers or "auto"]
        for bind in binds:
            words += ["--bind", bind.text]
    else:
        words += ["--no-master", "--bind", "fd://0"]
    words += ["--graceful-timeout", f"{args.graceful_timeout:g}"]
    if args.app_dir:
        words += ["--app-dir", args.app_dir]
    if args.config:
        words += ["--config", args.config]
    words += list(extra)
    return " ".join(shlex.quote(word) for word in words)


def render(args: argparse.Namespace, binds: list[BindSpec], extra: Sequence[str] = ()) -> str:
    """The supervisord section for validated `args`, ending with a newline."""
    fcgi = args.mode == "fcgi"
    log_name = "%(program_name)s_%(process_num)02d" if fcgi else "%(program_name)s"
    lines = [f"[{'fcgi-program' if fcgi else 'program'}:{args.name}]"]
    lines.append(f"command={_escape(_command(args, binds, extra))}")
    if fcgi:
        url, socket_lines = supervisor_socket(binds[0], args.directory, args.user)
        lines += [f"socket={_escape(url)}", f"socket_backlog={SOCKET_BACKLOG}", *socket_lines]
        lines.append(f"numprocs={args.numprocs or 2}")
        lines.append("process_name=%(program_name)s_%(process_num)02d")
    if args.directory:
        lines.append(f"directory={_escape(args.directory)}")
    if args.user:
        lines.append(f"user={_escape(args.user)}")
    lines += [
        "stopsignal=TERM",
        f"stopwaitsecs={stop_wait_seconds(args.graceful_timeout)}",
        "stopasgroup=true",
        "killasgroup=true",
        "autostart=true",
        "autorestart=unexpected",
        "exitcodes=0",
        f"startsecs={_startsecs(args)}",
        f"startretries={args.startretries}",
        "redirect_stderr=true",
        f"stdout_logfile={_escape(args.log_dir.rstrip('/'))}/{log_name}.log",
        f"stdout_logfile_maxbytes={LOG_MAXBYTES}",
        f"stdout_logfile_backups={LOG_BACKUPS}",
    ]
    env = ["PYTHONUNBUFFERED=1", *args.environment]
    lines.append("environment=" + ",".join(_env_item(item) for item in env))
    return "\n".join(lines) + "\n"


def _startsecs(args: argparse.Namespace) -> int:
    if args.startsecs is not None:
        return int(args.startsecs)
    return start_seconds(args.mode, args.workers)


def _env_item(item: str) -> str:
    key, _, value = item.partition("=")
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{key}={_escape(quoted)}"


def main(argv: list[str]) -> int:
    """Print the section for `argv` (the arguments after `supervisord-conf`) and return 0;
    on bad input print one line to stderr and return 2."""
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    else:
        extra = []
    try:
        args = build_parser().parse_args(argv)
        binds = _check(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(args, binds, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
