"""The tier's own frames between a web worker and the broker, on top of `offload.wire`.

CALL frames (and their RESULT, ERROR or INIT_FAILED replies) are offload's, relayed as they
are; a CALL's pool field is "POOL:LABEL" (pool names hold no colon), the label naming the
function in the broker's error messages. The kinds below are the tier's (from
`wire.FIRST_RELAY_KIND` up); a refusal (`Overloaded`, an unknown pool) is an ERROR reply.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

from tornado.web import HTTPError

from ...errors import WorkerCrashed
from ..api import PoolSpec
from ..offload import wire

DECLARE = wire.FIRST_RELAY_KIND  # worker -> broker: body is the pickled PoolSpec
DECLARED = wire.FIRST_RELAY_KIND + 1  # broker -> worker: the pool runs (same call id)
CANCEL = wire.FIRST_RELAY_KIND + 2  # worker -> broker: withdraw call `call_id`
FLAG_KILL = 2  # on CANCEL: also kill the call's process if it is running

Reply = Callable[[wire.Frame], None]


def declaration(spec: PoolSpec, call_id: int) -> wire.Frame:
    """The DECLARE frame for `spec` (its initializer must pickle: a module-level function or
    a "module:function" string)."""
    return wire.Frame(DECLARE, call_id, pickle.dumps(spec, protocol=5), pool=spec.name)


def read_declaration(frame: wire.Frame) -> PoolSpec:
    """The PoolSpec of a DECLARE frame; ValueError if the body is not one."""
    spec = pickle.loads(frame.body)
    if not isinstance(spec, PoolSpec):
        raise ValueError(f"a DECLARE frame holds {type(spec).__name__}, not a PoolSpec")
    return spec


def cancel(call_id: int, *, kill: bool) -> wire.Frame:
    return wire.Frame(CANCEL, call_id, flags=FLAG_KILL if kill else 0)


def call_target(pool: str, label: str) -> str:
    """The pool field of a CALL frame: the pool name, a colon, the label (cut to fit)."""
    return f"{pool}:{label}".encode()[:255].decode(errors="ignore")


def split_target(field: str) -> tuple[str, str]:
    pool, _, label = field.partition(":")
    return pool, label or "the call"


def describe_failure(pool: str, error: BaseException) -> str:
    """A pool's start failure for the log: the initializer's exception and its remote
    traceback, or a process that died before its first call."""
    if isinstance(error, WorkerCrashed):
        return f"the processes of pool {pool!r} die as they start: {message_of(error)}"
    cause = error.__cause__
    where = str(cause).strip().strip('"').strip() if cause is not None else ""
    headline = f"the initializer of pool {pool!r} raised {type(error).__name__}: {error}"
    return f"{headline}\n{where}" if where else headline


def message_of(error: BaseException) -> str:
    """The message an HTTPError-based error was raised with (without "HTTP 500: ...")."""
    if isinstance(error, HTTPError) and error.log_message:
        return str(error.log_message % error.args)
    return str(error)


def error_reply(error: BaseException, call_id: int) -> wire.Frame:
    return wire.encode_error(error).frame(wire.ERROR, call_id)
