"""One frame of the offload transport and what its header holds.

A frame is a fixed header (`HEADER`: kind, flags, call id, timeout, body length, fd count,
pool-name length), the pool name, the body, and up to `MAX_FDS` file descriptors sent with
SCM_RIGHTS in the same `sendmsg` as the frame's first byte (see `wire`).
"""

from __future__ import annotations

import contextlib
import os
import struct

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
