"""Pickled payloads with their large buffers in one memfd.

Bodies are pickle protocol 5. Buffers pickle hands out of band (numpy arrays) and large
`bytes`, `bytearray` and `memoryview` values (at least `OUT_OF_BAND` bytes; wrapped before
pickling, since pickle's fast path for bytes skips every hook) go into ONE memfd together with
the pickle itself; the frame then carries `FLAG_MEMFD`, the memfd as its first fd and a small
table as its body. The receiver reads each buffer straight into the object it becomes (one
copy, no pipe), then holds the memfd alone and keeps it for its own next large frame, for a
second at most (see `_Spares`). A memfd lives as long as an fd refers to it: a process that
dies leaks nothing, and no name is left in /dev/shm.
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import io
import os
import pickle
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .frame import FLAG_MEMFD, Frame, WireError

OUT_OF_BAND = 64 * 1024  # buffers at least this large travel in the memfd
INLINE_LIMIT = 64 * 1024  # a pickle larger than this goes into the memfd too
_ALIGN = 64
_TABLE_HEAD = struct.Struct("<QI")  # pickle length, buffer count
_TABLE_ENTRY = struct.Struct("<QQI")  # offset, length, flags
_COPY_BYTES = 1  # the receiver reads this buffer into a new bytes (else: a new bytearray)


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


def dumps_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Encoded:
    """`dumps((fn, args, kwargs))`, skipping the scan for large values when every argument
    is a plain scalar (the common small call)."""
    if not kwargs and all(type(arg) in _PLAIN for arg in args):
        return dumps((fn, args, kwargs), marked=True)
    return dumps((fn, _mark_large(args), _mark_large(kwargs)), marked=True)


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
    it. Bounded: `_SPARE_COUNT` fds of at most `_SPARE_BYTES` each, closed once no large
    frame came or went for `IDLE` seconds (on an event loop by a timer; a pool process calls
    `release_idle` itself); a forked child forgets them (its parent may reuse them);
    `drop()` releases them at once (a pool's close does).
    """

    IDLE = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: list[tuple[int, int]] = []  # (fd, size)
        self._used = 0.0  # time.monotonic() of the last take or keep
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def take(self, size: int) -> tuple[int, int]:
        """An fd to write `size` bytes into and its current size (0: a new memfd)."""
        with self._lock:
            self._used = time.monotonic()
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
            self._used = time.monotonic()
            if size <= _SPARE_BYTES and len(self._fds) < _SPARE_COUNT:
                self._fds.append((fd, size))
                self._arm()
                return
        os.close(fd)

    def count(self) -> int:
        """How many spare memfds this process holds."""
        return len(self._fds)

    def idle_left(self) -> float | None:
        """Seconds until the spares count as idle (0: now); None when none are held."""
        if not self._fds:
            return None
        return max(0.0, self._used + self.IDLE - time.monotonic())

    def release_idle(self) -> None:
        """Close the spares if none was used for `IDLE` seconds."""
        if self.idle_left() == 0.0:
            self.drop()

    def _arm(self) -> None:
        """On an event loop, check for idleness `IDLE` seconds from now (one timer at a time,
        on the loop of the latest frame: a timer on a loop that has closed never fires)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop in this thread: the owner calls `release_idle`
        if self._timer is not None and self._timer_loop is loop:
            return
        if self._timer is not None:
            with contextlib.suppress(RuntimeError):
                self._timer.cancel()
        self._timer_loop = loop
        self._timer = loop.call_later(self.IDLE, self._expire)

    def _expire(self) -> None:
        self._timer = None
        left = self.idle_left()
        if left == 0.0:
            self.drop()
        elif left is not None:
            with self._lock:
                self._arm()

    def drop(self) -> None:
        """Close every spare memfd."""
        with self._lock:
            fds, self._fds = self._fds, []
            timer, self._timer = self._timer, None
        if timer is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                timer.cancel()
        for fd, _size in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._timer = None
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
