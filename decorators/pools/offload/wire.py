"""Frames between a caller and its pool processes over AF_UNIX stream sockets.

A frame is a fixed header (`HEADER`: kind, flags, call id, timeout, body length, fd count,
pool-name length), the pool name, the body, and up to `MAX_FDS` file descriptors sent with
SCM_RIGHTS in the same `sendmsg` as the frame's first byte. Relays (the CPU tier's broker)
read the header and forward body and fds untouched.

Bodies are pickle protocol 5. Buffers pickle hands out of band (numpy arrays) and, through
`reducer_override`, `bytes`, `bytearray` and `memoryview` of at least `OUT_OF_BAND` bytes go
into ONE memfd together with the pickle itself; the frame then carries `FLAG_MEMFD`, the memfd
as its first fd and a small table as its body. The receiver maps the memfd privately, closes
the fd at once and unpickles with memoryviews of the mapping, so the shared memory lives only
as long as the fds and mappings that refer to it: a process that dies leaks nothing.
"""

from __future__ import annotations

import array
import contextlib
import copyreg
import io
import mmap
import os
import pickle
import socket
import struct
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Frame kinds. 1-31 belong to the offload transport; a relay may define its own from 32 up.
CALL = 1  # caller -> pool process: a pickled (fn, args, kwargs)
RESULT = 2  # pool process -> caller: a pickled return value
ERROR = 3  # pool process -> caller: a pickled exception with its traceback text
INIT_FAILED = 4  # pool process -> caller: the initializer raised (an ERROR body); it exits
SPAWN = 8  # dispatcher -> zygote: fork a pool process (body: pickled spawn request)
SPAWNED = 9  # zygote -> dispatcher: body is the pid (u32), fd 0 is the child's socket
KILL = 10  # dispatcher -> zygote: SIGKILL pid (body u32), if it is still unreaped
EXITED = 11  # zygote -> dispatcher: body is pid (u32) and exit code (i32, -signal)
HELLO = 12  # zygote -> dispatcher: the zygote is up and serving
FIRST_RELAY_KIND = 32

FLAG_MEMFD = 1  # fd 0 is a memfd holding the pickle and its out-of-band buffers

HEADER = struct.Struct("<BBQdIBB")  # kind, flags, call id, timeout, body len, fd count, name len
MAX_FDS = 32
MAX_BODY = 1 << 30
OUT_OF_BAND = 64 * 1024  # buffers at least this large travel in the memfd
INLINE_LIMIT = 64 * 1024  # a pickle larger than this goes into the memfd too
_ALIGN = 64
_TABLE_HEAD = struct.Struct("<QI")  # pickle length, buffer count
_TABLE_ENTRY = struct.Struct("<QQ")  # offset, length
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


class WireError(Exception):
    """The peer sent bytes that are not a frame (or more fds than a frame may carry)."""


@dataclass
class Frame:
    """One frame. `fds` are owned by whoever holds the frame: send them or `close()` it."""

    kind: int
    call_id: int = 0
    body: bytes | memoryview = b""
    fds: list[int] = field(default_factory=list)
    flags: int = 0
    timeout: float = 0.0  # seconds; 0 means none
    pool: str = ""

    def close(self) -> None:
        """Close the frame's fds (a frame that will not be sent or decoded)."""
        fds, self.fds = self.fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Encoded:
    """A pickled payload ready to become a frame: flags, body and fds (owned)."""

    body: bytes
    fds: list[int]
    flags: int

    def frame(self, kind: int, call_id: int = 0, timeout: float = 0.0, pool: str = "") -> Frame:
        return Frame(kind, call_id, self.body, self.fds, self.flags, timeout, pool)


# --- pickling with out-of-band buffers -------------------------------------------------------


def _bytes_from(buffer: Any) -> bytes:
    return bytes(buffer)


def _bytearray_from(buffer: Any) -> bytearray:
    return bytearray(buffer)


def _memoryview_from(buffer: Any, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buffer)
    if fmt == "B" and len(shape) == 1:
        return view
    flat: Any = view.cast("B")
    return flat.cast(fmt, shape)  # type: ignore[no-any-return]


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    shape = view.shape or (view.nbytes,)
    if view.nbytes >= OUT_OF_BAND and view.c_contiguous:
        return _memoryview_from, (pickle.PickleBuffer(view.cast("B")), view.format, shape)
    return _memoryview_from, (view.tobytes(), view.format, shape)


class _OutOfBand:
    """A large bytes-like value to send out of band (pickle's fast path for `bytes` and
    `bytearray` skips `reducer_override`, so large ones are wrapped before pickling)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        value = self.value
        if type(value) is bytes:
            return _bytes_from, (pickle.PickleBuffer(value),)
        if type(value) is bytearray:
            return _bytearray_from, (pickle.PickleBuffer(value),)
        return _reduce_memoryview(value)


_LARGE_KINDS = (bytes, bytearray, memoryview)


_PLAIN = frozenset({int, float, str, bool, type(None), complex})


def _mark_large(value: Any, depth: int = 1) -> Any:
    """`value` with large bytes-likes (at the top or inside tuples, lists and dicts up to
    `depth` levels down) wrapped to go out of band; unchanged containers are kept as they are."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind in _LARGE_KINDS:
        return _OutOfBand(value) if memoryview(value).nbytes >= OUT_OF_BAND else value
    if kind is tuple or kind is list:
        if depth < 0:
            return value
        items = [_mark_large(item, depth - 1) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return kind(items)
        return value
    if kind is dict and depth >= 0:
        marked = {key: _mark_large(item, depth - 1) for key, item in value.items()}
        if any(marked[key] is not item for key, item in value.items()):
            return marked
    return value


_DISPATCH = {**copyreg.dispatch_table, memoryview: _reduce_memoryview}


def dumps(value: Any, *, marked: bool = False) -> Encoded:
    """Pickle `value`; large buffers and a large pickle go into one memfd. `marked`: the
    caller already wrapped large bytes-likes (see `_mark_large`)."""
    if not marked:
        value = _mark_large(value)
    buffers: list[pickle.PickleBuffer] = []
    data: bytes | memoryview
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except TypeError:  # a memoryview deeper down: pickle needs our reducer for it
        buffers.clear()
        out = io.BytesIO()
        pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffers.append)
        pickler.dispatch_table = _DISPATCH
        pickler.dump(value)
        data = out.getbuffer()
    if not buffers and len(data) <= INLINE_LIMIT:
        return Encoded(bytes(data), [], 0)
    return _into_memfd(memoryview(data), [b.raw() for b in buffers])


def _into_memfd(data: memoryview, views: Sequence[memoryview]) -> Encoded:
    table = [_TABLE_HEAD.pack(len(data), len(views))]
    parts: list[memoryview | bytes] = [data]
    offset = len(data)
    for view in views:
        pad = -offset % _ALIGN
        if pad:
            parts.append(bytes(pad))
            offset += pad
        table.append(_TABLE_ENTRY.pack(offset, view.nbytes))
        parts.append(view)
        offset += view.nbytes
    fd = os.memfd_create("tornado-run-call", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, offset)
        _write_all(fd, parts)
    except BaseException:
        os.close(fd)
        raise
    return Encoded(b"".join(table), [fd], FLAG_MEMFD)


def _write_all(fd: int, parts: list[memoryview | bytes]) -> None:
    position = 0
    pending = [memoryview(p).cast("B") for p in parts if len(p)]
    while pending:
        written = os.pwritev(fd, pending[:1024], position)
        position += written
        while pending and written >= pending[0].nbytes:
            written -= pending[0].nbytes
            pending.pop(0)
        if pending and written:
            pending[0] = pending[0][written:]


def loads(flags: int, body: bytes | memoryview, fds: list[int]) -> Any:
    """Unpickle a payload; takes ownership of `fds` and closes them."""
    if not flags & FLAG_MEMFD:
        for fd in fds:
            os.close(fd)
        return pickle.loads(body)
    if not fds:
        raise WireError("a memfd frame without its fd")
    fd, rest = fds[0], fds[1:]
    for other in rest:
        os.close(other)
    try:
        size = os.fstat(fd).st_size
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    length, count = _TABLE_HEAD.unpack_from(body, 0)
    view = memoryview(mapped)
    try:
        buffers = []
        for index in range(count):
            start, nbytes = _TABLE_ENTRY.unpack_from(body, _TABLE_HEAD.size + index * 16)
            buffers.append(view[start : start + nbytes])
        return pickle.loads(view[:length], buffers=buffers)
    finally:
        del buffers
        view.release()  # buffers still held by the value keep the mapping alive


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
    return dumps((fn, _mark_large(args), _mark_large(kwargs)), marked=True)


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
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


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


def receive(sock: socket.socket, reader: FrameReader) -> bool:
    """One `recvmsg` into `reader`; False on EOF. Raises BlockingIOError when nothing is there."""
    scratch = reader.scratch
    size, ancdata, msg_flags, _ = sock.recvmsg_into([scratch], _ANCILLARY, _RECV_FLAGS)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(array.array("i", payload[:usable]))
    if msg_flags & socket.MSG_CTRUNC:
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
        start = 0
        complete: list[Frame] = []
        while len(buffer) - start >= HEADER.size:
            kind, flags, call_id, timeout, length, nfds, nlen = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + nlen + length
            if length > MAX_BODY or nfds > MAX_FDS:
                raise WireError(f"frame of {length} bytes with {nfds} fds refused")
            if len(buffer) < end:
                break
            if len(self._fds) < nfds:
                raise WireError(f"frame announces {nfds} fds, {len(self._fds)} arrived")
            name_at = start + HEADER.size
            pool = bytes(buffer[name_at : name_at + nlen]).decode()
            body = bytes(buffer[name_at + nlen : end])
            fds = [self._fds.popleft() for _ in range(nfds)]
            start = end
            complete.append(Frame(kind, call_id, body, fds, flags, timeout, pool))
        if start:
            del buffer[:start]
        return complete

    def close(self) -> None:
        """Close fds received for frames that never completed."""
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())
        self._buffer.clear()
