"""Frames between a caller and its pool processes over AF_UNIX stream sockets.

A frame is a fixed header (`HEADER`: kind, flags, call id, timeout, body length, fd count,
pool-name length), the pool name, the body, and up to `MAX_FDS` file descriptors sent with
SCM_RIGHTS in the same `sendmsg` as the frame's first byte. Relays (the CPU tier's broker)
read the header and forward body and fds untouched.

Bodies are pickle protocol 5. Buffers pickle hands out of band (numpy arrays) and large
`bytes`, `bytearray` and `memoryview` values (at least `OUT_OF_BAND` bytes; wrapped before
pickling, since pickle's fast path for bytes skips every hook) go into ONE memfd together with
the pickle itself; the frame then carries `FLAG_MEMFD`, the memfd as its first fd and a small
table as its body. The receiver reads each buffer straight into the object it becomes (one
copy, no pipe), then holds the memfd alone and keeps it for its own next large frame (see
`_Spares`). A memfd lives as long as an fd refers to it: a process that dies leaks nothing,
and no name is left in /dev/shm.
"""

from __future__ import annotations

import array
import contextlib
import copyreg
import io
import os
import pickle
import socket
import struct
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
MAX_FDS = 32
MAX_BODY = 1 << 30
OUT_OF_BAND = 64 * 1024  # buffers at least this large travel in the memfd
INLINE_LIMIT = 64 * 1024  # a pickle larger than this goes into the memfd too
_ALIGN = 64
_TABLE_HEAD = struct.Struct("<QI")  # pickle length, buffer count
_TABLE_ENTRY = struct.Struct("<QQI")  # offset, length, flags
_COPY_BYTES = 1  # the receiver reads this buffer into a new bytes (else: a new bytearray)
_ANCILLARY = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_RECV_FLAGS = int(getattr(socket, "MSG_CMSG_CLOEXEC", 0))
_CTRUNC = int(socket.MSG_CTRUNC)  # plain ints: enum flag arithmetic is slow per call
_SOL_SOCKET = int(socket.SOL_SOCKET)
_SCM_RIGHTS = int(socket.SCM_RIGHTS)


class WireError(Exception):
    """The peer sent bytes that are not a frame (or more fds than a frame may carry)."""


class Frame:
    """One frame. `fds` are owned by whoever holds the frame: send them or `close()` it."""

    __slots__ = ("body", "call_id", "fds", "flags", "kind", "pool", "timeout")

    def __init__(
        self,
        kind: int,
        call_id: int = 0,
        body: bytes | memoryview = b"",
        fds: list[int] | None = None,
        flags: int = 0,
        timeout: float = 0.0,
        pool: str = "",
    ) -> None:
        self.kind = kind
        self.call_id = call_id
        self.body = body
        self.fds: list[int] = fds if fds is not None else []
        self.flags = flags
        self.timeout = timeout  # seconds; 0 means none
        self.pool = pool

    def __repr__(self) -> str:
        return (
            f"Frame(kind={self.kind}, call_id={self.call_id}, body={len(self.body)} bytes, "
            f"fds={self.fds}, flags={self.flags}, timeout={self.timeout}, pool={self.pool!r})"
        )

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
    return buffer if type(buffer) is bytes else bytes(buffer)  # `loads` reads into a bytes


def _bytearray_from(buffer: Any) -> bytearray:
    return buffer if type(buffer) is bytearray else bytearray(buffer)


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
        bits = _COPY_BYTES if type(view.obj) is bytes else 0
        table.append(_TABLE_ENTRY.pack(offset, view.nbytes, bits))
        parts.append(view)
        offset += view.nbytes
    fd, size = spares.take(offset)
    try:
        if size != offset:  # exactly: no byte of an earlier frame stays readable
            os.ftruncate(fd, offset)
        _write_all(fd, parts)
    except BaseException:
        os.close(fd)
        raise
    return Encoded(b"".join(table), [fd], FLAG_MEMFD)


class _Spares:
    """memfds this process received, read out and now holds alone (the sender closed its fd
    without mapping it), kept for its next large frame: their pages
    are already allocated, and allocating fresh shared pages costs more than the copy itself
    (measured here: 4-5x). A memfd so goes back and forth between a caller and a pool
    process; it is cut to each frame's exact size, so no byte of an earlier frame is left in
    it. Bounded: `_SPARE_COUNT` fds of at most `_SPARE_BYTES` each; a forked child forgets
    them (its parent may reuse them); `drop()` releases them (a pool's close does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: list[tuple[int, int]] = []  # (fd, size)

    def take(self, size: int) -> tuple[int, int]:
        """An fd to write `size` bytes into and its current size (0: a new memfd)."""
        with self._lock:
            if self._fds:
                fitting = [spare for spare in self._fds if spare[1] >= size]
                pick = min(fitting, key=_size) if fitting else max(self._fds, key=_size)
                self._fds.remove(pick)
                return pick
        return os.memfd_create("tornado-run-call", os.MFD_CLOEXEC), 0

    def keep(self, fd: int) -> None:
        try:
            size = os.fstat(fd).st_size
        except OSError:
            size = _SPARE_BYTES + 1
        with self._lock:
            if size <= _SPARE_BYTES and len(self._fds) < _SPARE_COUNT:
                self._fds.append((fd, size))
                return
        os.close(fd)

    def count(self) -> int:
        """How many spare memfds this process holds."""
        return len(self._fds)

    def drop(self) -> None:
        """Close every spare memfd."""
        with self._lock:
            fds, self._fds = self._fds, []
        for fd, _size in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self.drop()


def _size(spare: tuple[int, int]) -> int:
    return spare[1]


_SPARE_COUNT = 2
_SPARE_BYTES = 64 << 20
spares = _Spares()
os.register_at_fork(after_in_child=spares.forget_after_fork)


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


def _read_into(fd: int, target: bytearray, offset: int) -> None:
    view = memoryview(target)
    done = 0
    while done < len(target):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise WireError("a memfd shorter than its table")
        done += got


def _read_bytes(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data  # the usual case: one read, no further copy
    rest = bytearray(size - len(data))
    _read_into(fd, rest, offset + len(data))
    return data + rest


def loads(flags: int, body: bytes | memoryview, fds: list[int]) -> Any:
    """Unpickle a payload; takes ownership of `fds` (closes them, or keeps a read-out memfd
    as a spare). Each out-of-band buffer is read from the memfd straight into the object it
    becomes: a `bytes` for a `bytes`, else a `bytearray` (under a bytearray, memoryview or
    numpy array alike), so it crosses memory once and the memfd is free right after."""
    if not flags & FLAG_MEMFD:
        for fd in fds:
            os.close(fd)
        return pickle.loads(body)
    if not fds:
        raise WireError("a memfd frame without its fd")
    try:
        fd = fds[0]
        length, count = _TABLE_HEAD.unpack_from(body, 0)
        pickled = _read_bytes(fd, length, 0)
        buffers: list[bytes | bytearray] = []
        for index in range(count):
            start, size, bits = _TABLE_ENTRY.unpack_from(
                body, _TABLE_HEAD.size + index * _TABLE_ENTRY.size
            )
            if bits & _COPY_BYTES:
                buffers.append(_read_bytes(fd, size, start))
            else:
                target = bytearray(size)
                _read_into(fd, target, start)
                buffers.append(target)
        spares.keep(fds.pop(0))  # read out: this process alone holds it now
    finally:
        for fd in fds:
            os.close(fd)
    return pickle.loads(pickled, buffers=buffers)


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
    plain = _PLAIN
    if not kwargs and all(type(arg) in plain for arg in args):
        return dumps((fn, args, kwargs), marked=True)
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


def receive(sock: socket.socket, reader: FrameReader) -> bool:
    """One `recvmsg` into `reader`; False on EOF. Raises BlockingIOError when nothing is there."""
    scratch = reader.scratch
    size, ancdata, msg_flags, _ = sock.recvmsg_into([scratch], _ANCILLARY, _RECV_FLAGS)
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
