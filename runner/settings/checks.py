"""Checks that need several values, the file system or the platform: each raises `UsageError`
with one line naming the value and what is allowed."""

from __future__ import annotations

import importlib

from ..errors import UsageError
from ..sockets import reuseport
from ..worker import privileges, tls
from .options import OPTIONS_BY_NAME, Settings
from .parsers import is_app_spec


def validate(settings: Settings) -> None:
    """Raise `UsageError` for the first combination of values that cannot work."""
    if not is_app_spec(settings.app):
        hint = "" if ":" in settings.app else " (or a subcommand: status, supervisord-conf)"
        raise UsageError(
            f"application {settings.app!r} is not allowed: use MODULE:ATTR, "
            f"e.g. myapp:application{hint}"
        )
    if not settings.app_dir.is_dir():
        raise UsageError(f"--app-dir {str(settings.app_dir)!r}: no such directory")
    if settings.loop == "uvloop" and not _importable("uvloop"):
        raise UsageError(
            "--loop 'uvloop': uvloop is not installed (pip install uvloop), "
            "use --loop auto or asyncio"
        )
    if settings.http == "fast" and not _importable("httptools"):
        raise UsageError(
            "--http 'fast': httptools is not installed (pip install httptools), "
            "use --http auto or tornado"
        )
    _check_supervision(settings)
    _check_tls(settings)
    if settings.no_master and settings.workers != 1 and settings.workers != "auto":
        raise UsageError(
            f"--workers {settings.workers} with --no-master: a single process serves; "
            "drop --workers or the --no-master flag"
        )


def _check_supervision(settings: Settings) -> None:
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
    if not settings.reload:
        for name in ("reload_dir", "reload_include", "reload_exclude"):
            option = OPTIONS_BY_NAME[name]
            if getattr(settings, name) != option.default:
                raise UsageError(f"{option.flag}: needs --reload (it says what --reload watches)")
    if settings.reuse_port and not reuseport.supported() and not settings.no_master:
        raise UsageError("--reuse-port: this platform has no SO_REUSEPORT; drop the flag")


def _check_tls(settings: Settings) -> None:
    """TLS options that need each other, then the files, loaded as a worker will load them."""
    if settings.certfile is None:
        for name in ("keyfile", "ca_certs", "ciphers"):
            value = getattr(settings, name)
            if value is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} {str(value)!r}: needs --certfile (TLS is off without it)")
        if settings.cert_reqs != "none":
            raise UsageError(f"--cert-reqs {settings.cert_reqs}: needs --certfile (TLS is off)")
        return
    if settings.cert_reqs != "none" and settings.ca_certs is None:
        raise UsageError(
            f"--cert-reqs {settings.cert_reqs}: needs --ca-certs FILE, the CA certificates "
            "that client certificates are verified against"
        )
    try:
        tls.build_context(settings)
    except tls.TLSFileError as exc:
        raise UsageError(str(exc)) from None
    identity = privileges.resolve(settings.user, settings.group)
    for flag, path in tls.files(settings):
        if identity is not None and not privileges.can_read(identity, path):
            raise UsageError(
                f"{flag} {path}: not readable by --user {identity.name}, and the workers "
                "read it when they start (give that user read access)"
            )


def _importable(name: str) -> bool:
    """True if `name` imports (importing a loop or parser library creates no loop and no
    thread)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
