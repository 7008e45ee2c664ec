"""Writing what an `@unblock` handler verb returned, on the IOLoop thread."""

from __future__ import annotations

import logging
from typing import Any

from tornado.escape import json_encode
from tornado.web import RequestHandler
from tornado_run.runner import lifecycle

from .errors import Overloaded

log = logging.getLogger("tornado_run.unblock")


def write_result(handler: RequestHandler, result: Any, verb: str) -> None:
    """dict -> JSON, list -> JSON array, str/bytes -> body, None -> nothing; else TypeError."""
    if result is None:
        return
    if isinstance(result, dict | str | bytes):
        handler.write(result)
    elif isinstance(result, list):
        handler.set_header("Content-Type", "application/json; charset=UTF-8")
        handler.write(json_encode(result))
    else:
        raise TypeError(
            f"{type(handler).__name__}.{verb}() returned {type(result).__name__}; an @unblock "
            "handler verb may return dict, list, str, bytes, None, or yield chunks"
        )


def answer_overloaded(handler: RequestHandler, error: Overloaded) -> None:
    """Send the 503 with its Retry-After header (send_error would clear the header)."""
    log.warning("%s %s: %s", handler.request.method, handler.request.uri, error)
    if lifecycle.headers_written(handler):
        handler.finish()
        return
    handler.clear()
    handler.set_status(error.status_code)
    handler.set_header("Retry-After", str(error.retry_after))
    try:
        handler.write_error(error.status_code, exc_info=(type(error), error, error.__traceback__))
    except Exception:
        log.exception("write_error failed while answering 503")
    if not lifecycle.handler_finished(handler):
        handler.finish()
