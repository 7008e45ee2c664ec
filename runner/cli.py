"""`tornado-run MODULE:ATTR [options]`: parse, validate, bind, then run the master (or, with
--no-master, serve in this process). Subcommands (`status`, `supervisord-conf`) are looked up
before the app is parsed, since an app spec always contains ':'."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

from . import lifecycle
from .appcheck import check_app_loads
from .cpus import usable_cores
from .errors import EXIT_OK, EXIT_USAGE, RunnerError, UsageError, format_error
from .logsetup import setup_logging
from .master import pidfile
from .master.limits import raise_open_files_limit
from .proctitle import set_title
from .settings.loading import load_settings
from .settings.options import OPTIONS, Option, Settings
from .settings.reference import default_text
from .sockets.binding import bind_all, close_all, describe, remove_unix_files, systemd_sockets
from .versions import version_text
from .worker import tls
from .worker.appload import load_application
from .worker.loops import loop_factory
from .worker.process import WorkerContext, run_worker

log = logging.getLogger("tornado_run.master")

SUBCOMMANDS = {
    "status": "control.status",
    "supervisord-conf": "supervisord_conf",
}

EPILOG = """\
examples:
  tornado-run myapp:application
  tornado-run myapp:application --workers auto --bind 0.0.0.0:8000
  tornado-run myapp:make_app --factory --bind 'unix:/run/myapp.sock?mode=0660&group=www-data'
  tornado-run myapp:application --bind 0.0.0.0:8443 --certfile cert.pem --keyfile key.pem
  tornado-run myapp:application --no-master --bind fd://0     (supervisord fcgi-program)
  tornado-run myapp:application --config /etc/myapp/tornado-run.toml --check
  tornado-run status --pid /run/myapp.pid
  tornado-run supervisord-conf myapp:application --mode program

Every option can also be set in the config file's [server] table (e.g. graceful_timeout = 30)
and as an environment variable TORNADO_RUN_<NAME> (e.g. TORNADO_RUN_WORKERS=4). Precedence:
defaults < config file < environment < command line. WEB_CONCURRENCY sets the default worker
count. Signals to the master: TERM/INT graceful stop, QUIT immediate, HUP rolling reload,
TTIN/TTOU one worker more/fewer, USR1 reopen log files. Exit codes: 0 clean stop, 1 runtime
failure, 2 usage or configuration error, 3 the application failed to load.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see tornado-run --help)")


class _VersionAction(argparse.Action):
    """`--version`: print tornado-run's version and those of what it serves with, then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print versions and exit")

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        print(version_text())
        raise SystemExit(EXIT_OK)


def _help(option: Option) -> str:
    """The option's help with its default, escaped for argparse's %-formatting."""
    default = default_text(option)
    text = option.help
    if "(default" not in text:
        if default == "0 (off)":
            text = text.replace(" (0: off)", "")
        text = f"{text} (default: {default})"
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser; every option defaults to None (= not given), and its help
    shows the real default."""
    parser = _Parser(
        prog="tornado-run",
        description="Run a Tornado application under a supervising pre-fork master.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "app", nargs="?", metavar="MODULE:ATTR", help="the application, e.g. myapp:application"
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument(
        "--config", metavar="FILE", help="TOML file with [server], [pools], [logging] tables"
    )
    parser.add_argument(
        "--check", action="store_true", help="load the app and validate everything, then exit"
    )
    for option in OPTIONS:
        if option.is_flag and option.name.startswith("no_"):
            parser.add_argument(
                *option.flags,
                dest=option.name,
                action="store_const",
                const=True,
                help=_help(option),
            )
        elif option.is_flag:
            parser.add_argument(
                *option.flags,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                help=_help(option),
            )
        else:
            parser.add_argument(
                *option.flags,
                dest=option.name,
                action="append" if option.repeatable else "store",
                metavar=option.metavar,
                help=_help(option),
            )
    return parser


def reject_unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Raise `UsageError` for the first option that is not one of the parser's (nor an
    abbreviation of one), naming the closest match; argparse alone would report the wrong
    word when an unknown option's value is taken as the app."""
    actions = parser._option_string_actions
    known = list(actions)
    takes_value = False
    for arg in argv:
        if arg == "--":
            return
        if takes_value or not arg.startswith("-") or arg == "-" or _is_number(arg):
            takes_value = False
            continue
        name = arg.split("=", 1)[0]
        matches = [k for k in known if k == name or (name.startswith("--") and k.startswith(name))]
        if matches:
            action = actions[matches[0]]
            takes_value = "=" not in arg and action.nargs != 0 and len(set(matches)) == 1
            continue
        if not name.startswith("--") and len(name) > 2 and name[:2] in known:
            continue  # -w4: a short option with its value attached
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"unrecognized option {name}{hint} (see tornado-run --help)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tornado-run` and `python -m tornado_run.runner`; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] in SUBCOMMANDS:
            return _subcommand(args[0], args[1:])
        settings = parse_settings(args)
        setup_logging(
            settings.log_level,
            settings.access_log
            or settings.access_log_format is not None
            or settings.access_log_json,
            settings.logging,
            raw_access=settings.access_log_format is not None or settings.access_log_json,
        )
        return start(settings)
    except RunnerError as exc:
        sys.stderr.write(format_error(str(exc)))
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK


def parse_settings(argv: list[str]) -> Settings:
    """Settings from the command line, environment and config file; `UsageError` if invalid."""
    parser = build_parser()
    reject_unknown_options(parser, argv)
    namespace = parser.parse_args(argv)
    if not namespace.app:
        raise UsageError("missing the application: tornado-run MODULE:ATTR, e.g. myapp:application")
    cli = {option.name: getattr(namespace, option.name) for option in OPTIONS}
    return load_settings(namespace.app, cli, config_path=namespace.config, check=namespace.check)


def _subcommand(name: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(f"{__package__}.{SUBCOMMANDS[name]}")
    except ImportError as exc:
        raise UsageError(
            f"'tornado-run {name}' is not available in this installation ({exc})"
        ) from None
    entry: Callable[[list[str]], int] = module.main
    return entry(argv)


def resolve_workers(settings: Settings) -> int:
    """The worker count: a number, or usable cores for 'auto'."""
    return usable_cores() if settings.workers == "auto" else int(settings.workers)


def start(settings: Settings) -> int:
    """Bind, then check, serve without a master, or run the master."""
    workers = 1 if settings.no_master else resolve_workers(settings)
    raise_open_files_limit(settings.max_connections)  # before any fork: workers inherit it
    pidfile.check_writable(settings.pid, keep=not settings.check)
    sockets = _listening_sockets(settings)
    try:
        if settings.check:
            return _check(settings, sockets, workers)
        if settings.no_master:
            return _serve_here(settings, sockets)
        from .master.loop import Master
        from .master.startup import preload, warn_unreadable_paths

        if settings.preload:
            preload(settings)
        check_app_loads(settings)
        _import_what_workers_share(settings)
        set_title(f"master [{settings.app}]")
        master = Master(settings, sockets, workers)
        master.open_services()
        warn_unreadable_paths(settings)
        return master.run()
    finally:
        close_all(sockets)


def _import_what_workers_share(settings: Settings) -> None:
    """Import, before forking, the modules every worker imports anyway (Tornado's web stack
    and the chosen loop), so the workers share those pages instead of each loading its own
    copy, and a replacement worker serves sooner. Neither starts a thread or a loop."""
    import tornado.web  # noqa: F401

    loop_factory(settings.loop)


def _listening_sockets(settings: Settings) -> list[socket.socket]:
    if not settings.bind_given:
        activated = systemd_sockets(int(settings.backlog))
        if activated:
            return activated
    if settings.reuse_port and not settings.no_master:
        from .sockets.reuseport import bind_for_workers

        return bind_for_workers(settings.bind, settings.backlog)
    return bind_all(settings.bind, settings.backlog)


def _check(settings: Settings, sockets: list[socket.socket], workers: int) -> int:
    os.environ[lifecycle.ENV_POOLS_CONFIG] = settings.pools_json()  # as a worker would see it
    with asyncio.Runner(loop_factory=loop_factory(settings.loop)) as runner:
        runner.run(load_application(settings.app, settings.app_dir, settings.factory))
    where = ", ".join(describe(sock, tls.enabled(settings)) for sock in sockets)
    loop = loop_factory(settings.loop).__module__.split(".")[0]
    print(f"tornado-run: ok: {settings.app} loads; {workers} worker(s), loop {loop}")
    print(f"tornado-run: ok: would listen on {where}")
    return EXIT_OK


def _serve_here(settings: Settings, sockets: list[socket.socket]) -> int:
    set_title(f"server [{settings.app}] (no master)")
    for sock in sockets:
        log.info(
            "Listening at %s (no master, pid %d)",
            describe(sock, tls.enabled(settings)),
            os.getpid(),
        )
    if os.environ.get("NOTIFY_SOCKET"):
        log.warning(
            "--no-master does not notify systemd (NOTIFY_SOCKET is set): a Type=notify unit "
            "needs the master; use Type=exec with --no-master"
        )
    pidfile.write(settings.pid)
    try:
        return run_worker(WorkerContext(settings, sockets))
    finally:
        remove_unix_files(settings.bind if settings.bind_given else ())
        pidfile.remove(settings.pid)


__all__ = ["EXIT_USAGE", "build_parser", "main", "parse_settings", "start"]
