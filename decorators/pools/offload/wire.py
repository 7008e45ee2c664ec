"""Frames between a caller and its pool processes over AF_UNIX stream sockets: encoding
calls, results and errors, sending and reassembling frames with their fds.

Relays (the CPU tier's broker) read the header and forward body and fds untouched. The frame
itself is `frame.Frame`; payloads and their memfds are `payload`'s; both are re-exported
here, so callers need only this module.
"""

from __future__ import annotations

import array
import contextlib
import os
import pickle
import socket
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .frame import CALL as CALL
from .frame import ERROR as ERROR
from .frame import EXITED as EXITED
from .frame import FIRST_RELAY_KIND as FIRST_RELAY_KIND
from .frame import FLAG_MEMFD as FLAG_MEMFD
from .frame import HEADER as HEADER
from .frame import HELLO as HELLO
from .frame import INIT_FAILED as INIT_FAILED
from .frame import KILL as KILL
from .frame import MAX_BODY as MAX_BODY
from .frame import MAX_FDS as MAX_FDS
from .frame import RESULT as RESULT
from .frame import SPAWN as SPAWN
from .frame import SPAWNED as SPAWNED
from .frame import Frame as Frame
from .frame import WireError as WireError
from .payload import OUT_OF_BAND as OUT_OF_BAND
from .payload import Encoded as Encoded
from .payload import dumps as dumps
from .payload import dumps_call
from .payload import loads as loads
from .payload import spares as spares

_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_RECV_FLAGS = int(getattr(socket, "MSG_CMSG_CLOEXEC", 0))
_CTRUNC = int(socket.MSG_CTRUNC)  # plain ints: enum flag arithmetic is slow per call
_SOL_SOCKET = int(socket.SOL_SOCKET)
_DONTWAIT = int(socket.MSG_DONTWAIT)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)


# --- calls, results and errors ---------------------------------------------------------------


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool process (set as its `__cause__`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _with_remote_traceback(error: BaseException, text: str) -> BaseException:
    error.__cause__ = RemoteTraceback(text)
    return error


def encode_call(fn: Callable[..., Any] | tuple[str, str], args: Any, kwargs: Any) -> Encoded:
    """Pickle a call; `fn` is a picklable callable or a (module, qualname) reference."""
    return dumps_call(fn, args, kwargs)


def decode_call(frame: Frame) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The (fn or reference, args, kwargs) of a CALL frame; closes its fds."""
    fn, args, kwargs = loads(frame.flags, frame.body, frame.fds)
    frame.fds = []
    return fn, args, kwargs


def encode_result(value: Any) -> Encoded:
    """Pickle a return value (pickling errors propagate to the caller of this function)."""
    return dumps(value)


def encode_error(error: BaseException) -> Encoded:
    """Pickle an exception with its traceback text; an exception that cannot be pickled (or
    unpickled) becomes a RuntimeError naming it, with the same traceback."""
    text = "".join(traceback.format_exception(error))
    text = f'\n"""\n{text}"""'
    try:
        encoded = dumps((error, text))
        if not encoded.fds:
            pickle.loads(encoded.body)  # some exceptions pickle but cannot be rebuilt
        return encoded
    except Exception:
        substitute = RuntimeError(f"{type(error).__name__}: {error}")
        return dumps((substitute, text))


def decode_reply(frame: Frame) -> Any:
    """The value of a RESULT frame; raises the exception of an ERROR or INIT_FAILED frame with
    the remote traceback as its cause. Closes the frame's fds."""
    payload = loads(frame.flags, frame.body, frame.fds)
    frame.fds = []
    if frame.kind == RESULT:
        return payload
    if frame.kind in (ERROR, INIT_FAILED):
        error, text = payload
        raise _with_remote_traceback(error, text)
    raise WireError(f"frame kind {frame.kind} is not a reply")


# --- frames on sockets -----------------------------------------------------------------------


def frame_parts(frame: Frame) -> list[bytes | memoryview]:
    """The header, pool name and body of `frame`, for a scatter-gather send."""
    name = frame.pool.encode()
    header = HEADER.pack(
        frame.kind, frame.flags, frame.call_id, frame.timeout, len(frame.body), len(frame.fds),
        len(name),
    )  # fmt: skip
    return [header, name, frame.body] if frame.body else [header, name]


def ancillary(fds: Sequence[int]) -> list[tuple[int, int, bytes]]:
    if not fds:
        return []
    return [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds).tobytes())]


def send_frame(sock: socket.socket, frame: Frame) -> None:
    """Send `frame` on a BLOCKING socket, then close its fds (they now travel with it)."""
    if len(frame.fds) > MAX_FDS:
        raise WireError(f"a frame carries at most {MAX_FDS} fds, not {len(frame.fds)}")
    parts = frame_parts(frame)
    sent = sock.sendmsg(parts, ancillary(frame.fds))
    frame.close()
    total = sum(len(part) for part in parts)
    if sent < total:
        sock.sendall(b"".join(parts)[sent:])


def receive(sock: socket.socket, reader: FrameReader, *, wait: bool = True) -> bool:
    """One `recvmsg` into `reader`; False on EOF. Raises BlockingIOError when nothing is there
    (on a non-blocking socket, or with `wait=False` on any socket)."""
    scratch = reader.scratch
    flags = _RECV_FLAGS if wait else _RECV_FLAGS | _DONTWAIT
    size, ancdata, msg_flags, _ = sock.recvmsg_into([scratch], _ANCILLARY, flags)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(array.array("i", payload[:usable]))
    if msg_flags & _CTRUNC:
        for fd in fds:
            os.close(fd)
        raise WireError("file descriptors were cut off (more than a frame may carry)")
    if not size:
        for fd in fds:
            os.close(fd)
        return False
    reader.feed(scratch[:size], fds)
    return True


class FrameReader:
    """Reassembles frames from stream bytes and the fds that came with them."""

    def __init__(self, scratch: int = 1 << 17) -> None:
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self.scratch = memoryview(bytearray(scratch))  # `receive` reads into it

    def feed(self, data: bytes | memoryview, fds: Sequence[int] = ()) -> None:
        self._buffer += data
        self._fds.extend(fds)

    def frames(self) -> list[Frame]:
        """Every complete frame buffered so far."""
        buffer = self._buffer
        view = memoryview(buffer)
        size = len(buffer)
        start = 0
        complete: list[Frame] = []
        try:
            while size - start >= _HEADER_SIZE:
                kind, flags, call_id, timeout, length, nfds, nlen = _unpack_header(buffer, start)
                if length > MAX_BODY or nfds > MAX_FDS:
                    raise WireError(f"frame of {length} bytes with {nfds} fds refused")
                name_at = start + _HEADER_SIZE
                end = name_at + nlen + length
                if size < end:
                    break
                if len(self._fds) < nfds:
                    raise WireError(f"frame announces {nfds} fds, {len(self._fds)} arrived")
                pool = str(view[name_at : name_at + nlen], "utf-8") if nlen else ""
                body = bytes(view[name_at + nlen : end])
                fds = [self._fds.popleft() for _ in range(nfds)] if nfds else []
                start = end
                complete.append(Frame(kind, call_id, body, fds, flags, timeout, pool))
        finally:
            view.release()
        if start:
            del buffer[:start]
        return complete

    def close(self) -> None:
        """Close fds received for frames that never completed."""
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())
        self._buffer.clear()
