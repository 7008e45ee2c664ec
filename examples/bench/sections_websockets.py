"""WebSockets across rolling reloads: open WebSockets that reconnect whenever they are closed
(as a browser app does), plus wrk HTTP load, while the master is sent HUP several times.

Counts abnormal closes (the client saw no close frame: 1006), closes by code (1012 expected),
failed HTTP requests, how long until every worker that served before a HUP is gone, and how
long until every WebSocket is served by a worker started after it.

    python examples/bench/run.py --only websockets            # 200 WebSockets, 3 HUPs
    python examples/bench/run.py --only websockets --quick    # 40 WebSockets, a smoke test
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

from tornado.websocket import WebSocketClientConnection, websocket_connect

from .harness import Server, Skip, free_port, help_text, running, tornado_run_command
from .loadgen import closed_loop, load_tool
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import CONNECTIONS, tornado_run

WS_APP = "examples.bench.ws_app:application"
HUPS = 3
_SEGMENT = 2.0  # seconds per wrk run; runs repeat until every HUP is done
_WAIT = 60.0  # ceiling for any one wait (connect all, old workers gone)


class SocketFleet:
    """`count` WebSockets on their own thread and event loop; each reconnects when closed."""

    def __init__(self, port: int, count: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.count = count
        self.pids: dict[int, int] = {}  # client index -> pid serving it now
        self.codes: Counter[str] = Counter()  # close codes seen ("1006": no close frame)
        self.connect_failures = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[int, WebSocketClientConnection] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SocketFleet:
        self._thread.start()
        if not _wait(lambda: len(self.pids) == self.count, _WAIT):
            self.stop()
            raise Skip(f"only {len(self.pids)} of {self.count} WebSockets connected")
        return self

    def served_by(self, pids: set[int]) -> bool:
        """True when every WebSocket is open and served by one of `pids`."""
        current = dict(self.pids)
        return len(current) == self.count and set(current.values()) <= pids

    def stop(self) -> None:
        self._stopping = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._close_all)
        self._thread.join(timeout=15)

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._client(index) for index in range(self.count)))

    async def _client(self, index: int) -> None:
        while not self._stopping:
            try:
                conn = await websocket_connect(self.url, connect_timeout=10)
                first = await conn.read_message()
            except Exception:  # refused, reset, timed out, handshake refused: count, retry
                self.connect_failures += 1
                await asyncio.sleep(0.05)
                continue
            if first is None:
                self._closed(conn)
                continue
            self._conns[index] = conn
            self.pids[index] = int(first)
            while await conn.read_message() is not None:
                pass
            self.pids.pop(index, None)
            self._conns.pop(index, None)
            self._closed(conn)

    def _closed(self, conn: WebSocketClientConnection) -> None:
        if not self._stopping:
            self.codes[str(conn.close_code or 1006)] += 1


class HttpLoad:
    """wrk runs of `_SEGMENT` seconds, one after another, until stopped; sums their counts."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.requests = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HttpLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=_SEGMENT + 40)

    def _run(self) -> None:
        while not self._stop.is_set():
            result = closed_loop(self.url, CONNECTIONS, _SEGMENT)
            self.requests += result.requests
            self.failed += result.errors + result.non_2xx


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.02)
    return False


def _measure(options: tuple[str, ...], sockets: int, hups: int) -> Values:
    load_tool()
    port = free_port()
    server = _ws_server(port, options)
    with running(server):
        fleet = SocketFleet(port, sockets).start()
        gone: list[float] = []
        moved: list[float] = []
        try:
            with HttpLoad(port) as http:
                time.sleep(1.0)
                for _ in range(hups):
                    old_gone, on_new = _one_hup(server, fleet)
                    gone.append(old_gone)
                    moved.append(on_new)
                    time.sleep(0.5)
        finally:
            fleet.stop()
    closes = sum(fleet.codes.values())
    return {
        "sockets": float(sockets),
        "closes_1012": float(fleet.codes["1012"]),
        "abnormal": float(fleet.codes["1006"]),
        "other_codes": float(closes - fleet.codes["1012"] - fleet.codes["1006"]),
        "connect_failures": float(fleet.connect_failures),
        "requests": float(http.requests),
        "failed": float(http.failed),
        "old_gone_s": max(gone),
        "moved_s": max(moved),
    }


def _one_hup(server: Server, fleet: SocketFleet) -> tuple[float, float]:
    """HUP; return seconds until every older worker is gone, and until every WebSocket is
    served by a worker that is running then."""
    before = set(server.workers())
    started = time.monotonic()
    server.signal(signal.SIGHUP)
    if not _wait(lambda: not set(server.workers()) & before, _WAIT):
        raise Skip(f"old workers still running {_WAIT:.0f} s after a HUP")
    old_gone = time.monotonic() - started
    if not _wait(lambda: fleet.served_by(set(server.workers())), _WAIT):
        raise Skip("WebSockets did not all reach the new workers")
    return old_gone, time.monotonic() - started


def _ws_server(port: int, options: tuple[str, ...]) -> Server:
    return tornado_run(port, *options, "--graceful-timeout", "30", app=WS_APP)


def _socket_options() -> list[tuple[str, ...]]:
    """A shared socket and, where this tornado-run has it, --reuse-port."""
    text = help_text(tornado_run_command())
    if "--reuse-port" not in text:
        return [()]
    return [("--no-reuse-port",) if "--no-reuse-port" in text else (), ("--reuse-port",)]


def websockets_section(settings: Settings, log: Log) -> Section:
    """Open WebSockets plus wrk HTTP load across HUPs: abnormal closes, failed requests."""
    sockets = 40 if settings.quick else 200
    variants = [
        variant(" ".join(["tornado-run --workers 2", *options]), _measure, options, sockets, HUPS)
        for options in _socket_options()
    ]
    return Section(
        "websockets",
        f"{sockets} open WebSockets plus wrk -c{CONNECTIONS} HTTP load across {HUPS} HUPs",
        [
            Column("closes_1012", "closes 1012"),
            Column("abnormal", "abnormal closes (1006)"),
            Column("other_codes", "other codes"),
            Column("connect_failures", "reconnect failures"),
            Column("requests", "HTTP requests"),
            Column("failed", "failed HTTP"),
            Column("old_gone_s", "HUP to old workers gone, s (max)", 2),
            Column("moved_s", "HUP to all sockets on new workers, s (max)", 2),
        ],
        interleaved(settings.rounds, variants, log),
        notes=[
            "each WebSocket reconnects as soon as it is closed, as a browser app does; a "
            "reconnect can land on an old worker that is retired later in the same reload",
            "goal: 0 abnormal closes, 0 failed HTTP requests",
        ],
    )
