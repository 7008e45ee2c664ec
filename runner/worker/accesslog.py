"""The access log line: gunicorn's `%(x)s` atoms (`--access-log-format`) or one JSON object
per request (`--access-log-json`), installed as the application's `log_function`. Levels
follow Tornado's own access log: info below 400, warning for 4xx, error for 5xx."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import tornado_adapter as adapter

if TYPE_CHECKING:
    from tornado.web import RequestHandler

access_log = logging.getLogger("tornado.access")

ATOMS = {
    "h": "remote address",
    "l": "'-'",
    "u": "user name ('-')",
    "t": "time the request started, [04/Dec/2026:18:30:00 +0000]",
    "r": "request line, GET /path?q=1 HTTP/1.1",
    "m": "method",
    "U": "path without the query",
    "q": "query string",
    "H": "protocol",
    "s": "status",
    "B": "response body size (Content-Length; 0 when streamed)",
    "b": "response body size ('-' when streamed or empty)",
    "f": "referrer",
    "a": "user agent",
    "T": "duration in whole seconds",
    "M": "duration in milliseconds",
    "D": "duration in microseconds",
    "L": "duration in decimal seconds",
    "p": "<pid> of the worker",
    "{name}i": "request header",
    "{name}o": "response header",
}
ATOM = re.compile(r"%\(([^)]*)\)s")
_HEADER = re.compile(r"\{([^}]+)\}([io])")


def unknown_atom(fmt: str) -> str | None:
    """The first atom of `fmt` that is not one of `ATOMS`, or None when all are known."""
    for match in ATOM.finditer(fmt):
        name = match.group(1)
        if name not in ATOMS and not _HEADER.fullmatch(name):
            return match.group(0)
    return None


def _atoms(handler: RequestHandler) -> Callable[[str], str]:
    """A function from an atom's name to its text for this request."""
    request = handler.request
    seconds = request.request_time()
    started = time.time() - seconds
    size = adapter.response_headers(handler).get("Content-Length", "")
    values = {
        "h": request.remote_ip or "-",
        "l": "-",
        "u": "-",
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(started)),
        "r": f"{request.method} {request.uri} {request.version}",
        "m": request.method or "-",
        "U": request.path,
        "q": request.query,
        "H": request.version,
        "s": str(handler.get_status()),
        "B": size or "0",
        "b": size if size not in ("", "0") else "-",
        "f": request.headers.get("Referer", "-"),
        "a": request.headers.get("User-Agent", "-"),
        "T": str(int(seconds)),
        "M": str(int(seconds * 1e3)),
        "D": str(int(seconds * 1e6)),
        "L": f"{seconds:.6f}",
        "p": f"<{os.getpid()}>",
    }

    def text(name: str) -> str:
        header = _HEADER.fullmatch(name)
        if header is None:
            return values[name]
        source = request.headers if header.group(2) == "i" else adapter.response_headers(handler)
        return str(source.get(header.group(1), "-"))

    return text


def format_line(fmt: str, handler: RequestHandler) -> str:
    """The line for `handler`'s request in `fmt` (every atom known: see `unknown_atom`)."""
    text = _atoms(handler)
    return ATOM.sub(lambda match: text(match.group(1)), fmt)


def json_line(handler: RequestHandler) -> str:
    """The request as one JSON object."""
    request = handler.request
    seconds = request.request_time()
    size = adapter.response_headers(handler).get("Content-Length")
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - seconds)),
        "remote": request.remote_ip,
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "protocol": request.version,
        "status": handler.get_status(),
        "size": int(size) if size else None,
        "referrer": request.headers.get("Referer"),
        "user_agent": request.headers.get("User-Agent"),
        "duration_ms": round(seconds * 1e3, 3),
        "pid": os.getpid(),
    }
    return json.dumps(record, separators=(",", ":"))


def log_function(fmt: str | None, as_json: bool) -> Callable[[RequestHandler], None] | None:
    """The application's `log_function` for these options; None keeps Tornado's own line."""
    if as_json:
        render: Callable[[RequestHandler], str] = json_line
    elif fmt is not None:

        def render(handler: RequestHandler) -> str:
            return format_line(fmt, handler)

    else:
        return None

    def log_request(handler: RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if access_log.isEnabledFor(level):
            access_log.log(level, "%s", render(handler))

    return log_request


def install(app: object, fmt: str | None, as_json: bool) -> None:
    """Make `app` (a `tornado.web.Application`) log requests in the chosen form; any other
    delegate keeps its own logging."""
    function = log_function(fmt, as_json)
    settings = getattr(app, "settings", None)
    if function is not None and isinstance(settings, dict):
        settings["log_function"] = function
