"""The worker<->master channel: a shared scoreboard plus one event pipe per worker.

Scoreboard: an anonymous shared mmap created by the master before any fork, with one
fixed-size slot per worker. The worker's event loop writes its slot (state, heartbeat, counters,
a JSON blob of `lifecycle.collect_stats()`); the master reads it without any round trip. Each
write is guarded by a sequence number (odd while writing), so a reader never sees a torn slot.

The last bytes of each slot belong to the master: before it sends a worker TERM it writes
there why (`STOP_SERVER`: the server stops; `STOP_REPLACED`: the worker is replaced by a new
one), and the worker reads it when the TERM arrives (`Scoreboard.stop_reason`). The worker's
own writes never touch that field, so the two writers cannot overwrite each other; a TERM
with no reason written (a TERM sent to the worker by someone else) reads `STOP_UNKNOWN`.

Event pipe: the worker writes one JSON line per event ("ready", "failed" with exit code and
message, and any event a later feature adds); the master reads them from its select loop, and
end of file tells it the worker is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

SLOT_SIZE = 4096
# seq, pid, state, started (wall clock), heartbeat (monotonic), requests, in_flight,
# connections, websockets, max_lag_ms, blocked_episodes, cap_hits, accept_refused, blob length
# (the same order as SlotView's fields)
_HEADER = struct.Struct("<QqqddQqqqdqqqq")
_STOP_REASON = struct.Struct("<q")  # master-written, at the end of the slot
_STOP_OFFSET = SLOT_SIZE - _STOP_REASON.size
BLOB_SIZE = _STOP_OFFSET - _HEADER.size
_READ_ATTEMPTS = 8

FREE, BOOTING, READY, DRAINING = 0, 1, 2, 3
STATE_NAMES = {FREE: "free", BOOTING: "booting", READY: "ready", DRAINING: "draining"}

STOP_UNKNOWN, STOP_SERVER, STOP_REPLACED = 0, 1, 2
"""Why the master sent TERM: unknown (not sent by the master), the server stops (TERM or
INT to the master), or the worker is replaced (HUP, --reload, recycling, TTOU)."""


@dataclass
class SlotView:
    """A consistent copy of one worker's slot, as the master reads it."""

    pid: int = 0
    state: int = FREE
    started: float = 0.0  # time.time() when the worker booted
    heartbeat: float = 0.0  # time.monotonic() of the worker loop's last stamp (0: never)
    requests: int = 0
    in_flight: int = 0
    connections: int = 0
    websockets: int = 0
    max_lag_ms: float = 0.0
    blocked_episodes: int = 0
    cap_hits: int = 0  # times accepting paused at --max-connections
    accept_refused: int = 0  # accept() attempts refused for lack of descriptors or memory
    stats: dict[str, Any] = field(default_factory=dict)  # lifecycle.collect_stats() and extras

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")


_HEADER_FIELDS = tuple(f.name for f in dataclasses.fields(SlotView) if f.name != "stats")
"""SlotView's fields in `_HEADER` order, between the sequence number and the blob length."""


class Scoreboard:
    """`capacity` slots in shared memory; the master claims and frees slots."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, capacity * SLOT_SIZE)
        self._free = list(range(capacity - 1, -1, -1))

    def claim(self) -> int | None:
        """Master: reserve a cleared slot for a new worker; None when all are taken."""
        if not self._free:
            return None
        index = self._free.pop()
        self.write(index, SlotView())
        self.set_stop_reason(index, STOP_UNKNOWN)
        return index

    def set_stop_reason(self, index: int, reason: int) -> None:
        """Master: say why the worker in slot `index` is about to get TERM (`STOP_*`).
        Written before the signal is sent, so the worker reads it when the TERM arrives."""
        _STOP_REASON.pack_into(self._map, index * SLOT_SIZE + _STOP_OFFSET, reason)

    def stop_reason(self, index: int) -> int:
        """Worker: why the master asked it to stop (`STOP_*`); `STOP_UNKNOWN` if it did not."""
        (reason,) = _STOP_REASON.unpack_from(self._map, index * SLOT_SIZE + _STOP_OFFSET)
        return int(reason)

    def release(self, index: int) -> None:
        """Master: free the slot of a worker that has been reaped."""
        self.write(index, SlotView())
        self.set_stop_reason(index, STOP_UNKNOWN)
        if index not in self._free:
            self._free.append(index)

    def read(self, index: int) -> SlotView:
        """A consistent copy of slot `index` (retries while the worker is mid-write)."""
        base = index * SLOT_SIZE
        fields: tuple[Any, ...] = ()
        blob = b""
        for _ in range(_READ_ATTEMPTS):
            fields = _HEADER.unpack_from(self._map, base)
            blob = bytes(self._map[base + _HEADER.size : base + _HEADER.size + fields[-1]])
            if fields[0] % 2 == 0 and _HEADER.unpack_from(self._map, base)[0] == fields[0]:
                break
        stats: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            decoded = json.loads(blob) if blob else {}
            stats = decoded if isinstance(decoded, dict) else {}
        return SlotView(**dict(zip(_HEADER_FIELDS, fields[1:-1], strict=True)), stats=stats)

    def write(self, index: int, view: SlotView) -> None:
        """Write slot `index` (worker: its own slot; master: only to clear it)."""
        base = index * SLOT_SIZE
        blob = json.dumps(view.stats, default=str).encode() if view.stats else b""
        if len(blob) > BLOB_SIZE:
            blob = json.dumps({"truncated": True}).encode()
        seq = _HEADER.unpack_from(self._map, base)[0]
        struct.pack_into("<Q", self._map, base, seq + 1)
        _HEADER.pack_into(
            self._map,
            base,
            seq + 1,
            view.pid,
            view.state,
            view.started,
            view.heartbeat,
            view.requests,
            view.in_flight,
            view.connections,
            view.websockets,
            view.max_lag_ms,
            view.blocked_episodes,
            view.cap_hits,
            view.accept_refused,
            len(blob),
        )
        self._map[base + _HEADER.size : base + _HEADER.size + len(blob)] = blob
        struct.pack_into("<Q", self._map, base, seq + 2)


class WorkerSlot:
    """The worker's side of its scoreboard slot: keeps its own copy and publishes it."""

    def __init__(self, board: Scoreboard, index: int) -> None:
        self.board = board
        self.index = index
        self.view = SlotView(pid=os.getpid(), state=BOOTING, started=time.time())
        self.publish()

    def publish(self, **changes: Any) -> None:
        """Apply `changes` (SlotView field names) and write the slot; stamps the heartbeat."""
        for name, value in changes.items():
            setattr(self.view, name, value)
        self.view.heartbeat = time.monotonic()
        self.board.write(self.index, self.view)


class EventWriter:
    """Worker end of the event pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **fields: Any) -> None:
        """Send one event; a master that is gone is ignored (the worker will notice it)."""
        line = json.dumps({"event": event, **fields}).encode() + b"\n"
        with contextlib.suppress(OSError):
            while line:
                line = line[os.write(self.fd, line) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class EventReader:
    """Master end of the event pipe (non-blocking)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buffer = b""
        os.set_blocking(fd, False)

    def read_events(self) -> list[dict[str, Any]]:
        """Every complete event available now; sets `eof` when the worker closed its end."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        events: list[dict[str, Any]] = []
        for line in lines:
            with contextlib.suppress(ValueError):
                decoded = json.loads(line)
                if isinstance(decoded, dict):
                    events.append(decoded)
        return events

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
