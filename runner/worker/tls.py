"""The worker's TLS context, built from --certfile, --keyfile, --ca-certs, --cert-reqs,
--ciphers and --tls-min-version.

Each worker builds its own context when it starts, so a worker started by HUP reads the files
as they are then: replacing them and sending HUP rotates the certificate. The master builds the
same context once, and throws it away, to refuse bad files before anything starts (a context
loads no event loop and starts no thread). A password-protected key is refused rather than
prompted for: workers have no terminal.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from ..errors import EXIT_APP_LOAD, RunnerError
from ..settings.options import Settings
from . import tornado_adapter as tornado

log = logging.getLogger("tornado_run.worker.tls")

ALPN_PROTOCOLS = ["http/1.1"]
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CERT_MARK = "-----BEGIN CERTIFICATE-----"
_KEY_MARK = "PRIVATE KEY-----"


class TLSFileError(ValueError):
    """A TLS file or value that cannot be used; the message names it and the problem."""


class TLSBootError(RunnerError):
    """A worker could not build its TLS context (files changed since the master checked)."""

    code = EXIT_APP_LOAD


def enabled(settings: Settings) -> bool:
    """True when the server speaks TLS on every --bind."""
    return settings.certfile is not None


def files(settings: Settings) -> list[tuple[str, Path]]:
    """(flag, path) of each TLS file given."""
    given = [
        ("--certfile", settings.certfile),
        ("--keyfile", settings.keyfile),
        ("--ca-certs", settings.ca_certs),
    ]
    return [(flag, path) for flag, path in given if path is not None]


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context a worker serves with (None without --certfile); raises `TLSBootError`
    with one line naming the file and the problem."""
    try:
        return build_context(settings)
    except TLSFileError as exc:
        raise TLSBootError(f"TLS: {exc}") from None


def build_context(settings: Settings) -> ssl.SSLContext | None:
    """A server context from the settings, or None without --certfile; raises `TLSFileError`."""
    if settings.certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSIONS[settings.tls_min_version]
    context.options |= ssl.OP_NO_RENEGOTIATION  # client-started renegotiation costs CPU
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    _load_chain(context, settings.certfile, settings.keyfile)
    if settings.ca_certs is not None:
        _load_ca(context, settings.ca_certs)
    context.verify_mode = CERT_REQS[settings.cert_reqs]
    if settings.ciphers is not None:
        try:
            context.set_ciphers(settings.ciphers)
        except ssl.SSLError:
            raise TLSFileError(
                f"--ciphers {settings.ciphers!r}: no cipher matches; use an OpenSSL cipher "
                "list such as ECDHE+AESGCM:ECDHE+CHACHA20"
            ) from None
    return context


def _load_chain(context: ssl.SSLContext, certfile: Path, keyfile: Path | None) -> None:
    cert_text = _read("--certfile", certfile)
    if _CERT_MARK not in cert_text:
        raise TLSFileError(f"--certfile {certfile}: no PEM certificate in the file ({_CERT_MARK})")
    key_flag, key_path = ("--keyfile", keyfile) if keyfile is not None else ("--certfile", certfile)
    key_text = cert_text if keyfile is None else _read("--keyfile", key_path)
    if _KEY_MARK not in key_text:
        hint = "" if keyfile is not None else "; give the key with --keyfile"
        raise TLSFileError(f"{key_flag} {key_path}: no PEM private key in the file{hint}")
    try:
        context.load_cert_chain(certfile, keyfile, password=_refuse_password(key_flag, key_path))
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(
                f"{key_flag} {key_path}: the private key does not match the certificate "
                f"in {certfile}"
            ) from None
        raise TLSFileError(
            f"--certfile {certfile}: cannot load the certificate and key ({_reason(exc)})"
        ) from None


def _load_ca(context: ssl.SSLContext, ca_certs: Path) -> None:
    if _CERT_MARK not in _read("--ca-certs", ca_certs):
        raise TLSFileError(f"--ca-certs {ca_certs}: no PEM certificate in the file ({_CERT_MARK})")
    try:
        context.load_verify_locations(cafile=ca_certs)
    except ssl.SSLError as exc:
        raise TLSFileError(
            f"--ca-certs {ca_certs}: cannot load the CA certificates ({_reason(exc)})"
        ) from None


def _read(flag: str, path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise TLSFileError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise TLSFileError(f"{flag} {path}: is a directory, not a PEM file") from None
    except PermissionError:
        raise TLSFileError(f"{flag} {path}: not readable (permission denied)") from None
    except OSError as exc:
        raise TLSFileError(f"{flag} {path}: cannot read it ({exc.strerror})") from None


def _encrypted(flag: str, path: Path) -> TLSFileError:
    return TLSFileError(
        f"{flag} {path}: the private key is password-protected, and workers cannot prompt for "
        f"a password; decrypt it (openssl pkey -in {path} -out KEY) and protect it by file mode"
    )


def _refuse_password(flag: str, path: Path) -> Callable[[], str]:
    """A password callback that refuses, so OpenSSL never prompts on the terminal."""

    def refuse() -> str:
        raise _encrypted(flag, path)

    return refuse


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


class QuietConnectionErrors(logging.Filter):
    """Turns Tornado's warning for each TLS connection that fails (a plain-HTTP client, a
    scanner, a client that distrusts the certificate, a request sent after the drain's
    close_notify) into one debug line: such a client costs only its own connection, and must
    not flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not tornado.is_tls_connection_error(record):
            return True
        log.debug("%s", record.getMessage())
        return False


def quiet_connection_errors() -> None:
    """Install `QuietConnectionErrors` on Tornado's `tornado.general` logger (once)."""
    logger = logging.getLogger("tornado.general")
    if not any(isinstance(f, QuietConnectionErrors) for f in logger.filters):
        logger.addFilter(QuietConnectionErrors())
