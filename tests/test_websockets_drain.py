"""WebSockets through stop, reload and recycling, against a real tornado-run and Tornado's own
WebSocket client on loopback: 1001 when the server stops, 1012 when a worker is replaced,
reconnects reach the new workers, last words come first, and HTTP loses nothing meanwhile.

Bounds here are generous ceilings (the graceful timeout is 60 s, so a drain that waited for
idle WebSockets would miss them by far), not timings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from runner_support import APPS, TORNADO_RUN, Load, Server, clean_env, http_get, wait_until
from tornado.websocket import WebSocketClientConnection, websocket_connect

pytestmark = pytest.mark.timeout(90)

APP = "ws_app:application"
SLOW_DRAIN = ("--graceful-timeout", "60")
STOP_BOUND = 15.0
"""Seconds a stop or a worker's retirement may take with idle WebSockets (not 60)."""


@dataclass
class Client:
    """One WebSocket: the pid that served it, and how it ended."""

    conn: WebSocketClientConnection
    pid: int
    messages: list[str] = field(default_factory=list)

    async def until_closed(self) -> int | None:
        """Read to the end; the close code (None: cut without a close frame, 1006)."""
        while (message := await self.conn.read_message()) is not None:
            self.messages.append(str(message))
        return self.conn.close_code


async def open_ws(server: Server, path: str = "/ws", deflate: bool = False) -> Client:
    conn = await websocket_connect(
        f"ws://127.0.0.1:{server.port}{path}", compression_options={} if deflate else None
    )
    first = await conn.read_message()
    assert isinstance(first, str)
    return Client(conn, json.loads(first)["pid"])


async def open_many(server: Server, count: int, path: str = "/ws") -> list[Client]:
    return list(await asyncio.gather(*(open_ws(server, path) for _ in range(count))))


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking helper (log waits, process waits) without stalling the clients' loop,
    which must stay free to answer close frames."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def closes(clients: list[Client]) -> list[int | None]:
    return list(
        await asyncio.wait_for(asyncio.gather(*(c.until_closed() for c in clients)), STOP_BOUND)
    )


HTTP_KINDS = pytest.mark.parametrize("http", ["fast", "tornado"])
"""The core behaviours run on both HTTP servers (`--http auto` is the fast one)."""


@HTTP_KINDS
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_sends_going_away_to_every_websocket_and_exits_0_promptly(
    launch: Callable[..., Server], signum: int, http: str
) -> None:
    server = launch(APP, "--workers", "2", "--http", http, *SLOW_DRAIN)

    async def main() -> None:
        clients = await open_many(server, 6)
        clients.append(await open_ws(server, "/ws-deflate", deflate=True))
        server.send_signal(signum)
        assert await closes(clients) == [1001] * 7
        assert {c.conn.close_reason for c in clients} == {"server shutdown"}
        assert await in_thread(server.wait, STOP_BOUND) == 0

    asyncio.run(main())
    assert re.search(r"closed \d WebSocket\(s\) with 1001, 0 without", server.log())


def test_clients_that_never_answer_the_close_do_not_hold_the_stop(
    launch: Callable[..., Server],
) -> None:
    server = launch(APP, "--workers", "1", *SLOW_DRAIN)
    mute = [raw_upgrade(server) for _ in range(3)]
    wait_until(lambda: status_line_read(mute), 10, "three upgrades answered")
    server.send_signal(signal.SIGTERM)
    assert server.wait(STOP_BOUND) == 0  # the graceful timeout is 60 s
    for sock in mute:
        received = read_to_end(sock)
        assert received.endswith(b"\x88\x11\x03\xe9server shutdown")  # its close frame, 1001
    assert re.search(
        r"closed 3 WebSocket\(s\) with 1001, 3 without a close handshake", server.log()
    )


def raw_upgrade(server: Server) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads nor answers."""
    assert server.port is not None
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def status_line_read(socks: list[socket.socket]) -> bool:
    for sock in socks:
        head = sock.recv(12, socket.MSG_PEEK)
        if not head.startswith(b"HTTP/1.1 101"):
            return False
    return True


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


@HTTP_KINDS
def test_hup_sends_service_restart_and_reconnects_reach_new_workers(
    launch: Callable[..., Server], http: str
) -> None:
    server = launch(APP, "--workers", "2", "--http", http, *SLOW_DRAIN)
    old = server.worker_pids()

    async def follow(client: Client, codes: list[int | None]) -> Client:
        """Reconnect after each close, as a browser app would, until a new worker serves."""
        while client.pid in old:
            codes.append(await client.until_closed())
            client = await open_ws(server)
        return client

    async def main() -> None:
        clients = await open_many(server, 8)
        assert {c.pid for c in clients} <= old
        server.send_signal(signal.SIGHUP)
        codes: list[int | None] = []
        final = await asyncio.wait_for(
            asyncio.gather(*(follow(c, codes) for c in clients)), 3 * STOP_BOUND
        )
        await in_thread(server.wait_for_log, r"Reload complete", 30)
        await in_thread(
            wait_until, lambda: not server.worker_pids() & old, STOP_BOUND, "old workers to exit"
        )
        new = server.worker_pids()
        assert len(codes) >= 8 and set(codes) == {1012}
        assert {c.pid for c in final} <= new and not new & old
        await final[0].conn.write_message("still here")
        assert await final[0].conn.read_message() == "still here"
        for client in final:
            client.conn.close()

    asyncio.run(main())
    assert server.stop() == 0


def test_last_words_reach_the_client_before_the_close_frame(
    launch: Callable[..., Server],
) -> None:
    server = launch(APP, "--workers", "1", *SLOW_DRAIN)

    async def main() -> None:
        polite = await open_many(server, 3, "/ws-last-words")
        plain = await open_ws(server)
        server.send_signal(signal.SIGHUP)
        assert await closes([*polite, plain]) == [1012] * 4
        assert [c.messages for c in polite] == [["bye 1012"]] * 3
        assert plain.messages == []

    asyncio.run(main())
    assert server.stop() == 0


@HTTP_KINDS
def test_http_load_across_a_hup_loses_nothing_while_websockets_close(
    launch: Callable[..., Server], http: str
) -> None:
    server = launch(APP, "--workers", "2", "--http", http, *SLOW_DRAIN)
    assert server.port is not None
    old = server.worker_pids()

    async def main(load: Load) -> None:
        clients = await open_many(server, 10)
        await in_thread(load.wait_for, 50)
        server.send_signal(signal.SIGHUP)
        codes = await closes([c for c in clients if c.pid in old])
        assert set(codes) == {1012}
        await in_thread(server.wait_for_log, r"Reload complete", 30)
        await in_thread(
            wait_until, lambda: not server.worker_pids() & old, STOP_BOUND, "old workers to exit"
        )
        await in_thread(load.wait_for, 50)

    with Load(server.port, fresh=2, kept=2, seconds=60) as load:
        asyncio.run(main(load))
    assert load.failures == []
    assert set(load.pids) & old and set(load.pids) - old  # served by both generations
    assert server.stop() == 0


def test_a_compressed_websocket_closes_the_same_way(launch: Callable[..., Server]) -> None:
    server = launch(APP, "--workers", "1", *SLOW_DRAIN)

    async def main() -> None:
        client = await open_ws(server, "/ws-deflate", deflate=True)
        assert "permessage-deflate" in client.conn.headers.get("Sec-WebSocket-Extensions", "")
        text = "compressible " * 500
        await client.conn.write_message(text)
        assert await client.conn.read_message() == text
        await asyncio.sleep(1.2)  # the server pings twice meanwhile; the client answers
        server.send_signal(signal.SIGHUP)
        assert await closes([client]) == [1012]
        replacement = await open_ws(server, "/ws-deflate", deflate=True)
        assert replacement.pid != client.pid
        server.send_signal(signal.SIGTERM)
        assert await closes([replacement]) == [1001]
        assert await in_thread(server.wait, STOP_BOUND) == 0

    asyncio.run(main())


def test_a_recycled_worker_closes_its_websockets_with_service_restart(
    launch: Callable[..., Server],
) -> None:
    server = launch(APP, "--workers", "2", "--max-requests", "40", *SLOW_DRAIN)

    async def main() -> None:
        clients = await open_many(server, 6)
        ended = asyncio.ensure_future(closes(clients))
        for _ in range(200):  # until every worker passed its request limit
            if ended.done():
                break
            await in_thread(server.get, "/pid")
        assert set(await ended) == {1012}
        assert "max-requests" in server.log()

    asyncio.run(main())
    assert server.stop() == 0


async def spread(server: Server, workers: set[int]) -> list[Client]:
    """Open WebSockets until every worker in `workers` serves at least one (bounded)."""
    clients: list[Client] = []
    for _ in range(60):
        clients.append(await open_ws(server))
        if {c.pid for c in clients} >= workers:
            return clients
    raise AssertionError(f"60 WebSockets all landed on {set(c.pid for c in clients)}")


def test_fewer_workers_close_the_retired_workers_websockets_with_service_restart(
    launch: Callable[..., Server],
) -> None:
    server = launch(APP, "--workers", "2", *SLOW_DRAIN)

    async def main() -> None:
        clients = await spread(server, server.worker_pids())
        server.send_signal(signal.SIGTTOU)
        await in_thread(server.wait_for_log, r"fewer workers wanted", 15)
        (retired,) = re.findall(r"retiring worker \d+ \(pid (\d+)\): fewer", server.log())
        cut = [c for c in clients if c.pid == int(retired)]
        kept = [c for c in clients if c.pid != int(retired)]
        assert cut and kept
        assert set(await closes(cut)) == {1012}
        await in_thread(
            wait_until, lambda: len(server.worker_pids()) == 1, STOP_BOUND, "one worker left"
        )
        await kept[0].conn.write_message("still here")
        assert await kept[0].conn.read_message() == "still here"
        for client in kept:
            client.conn.close()

    asyncio.run(main())
    assert server.stop() == 0


def test_a_source_change_under_reload_closes_with_service_restart(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(APPS / "ws_app.py", app_dir / "ws_dev.py")
    server = launch("ws_dev:application", "--reload", *SLOW_DRAIN, app_dir=app_dir)

    async def main() -> None:
        clients = await open_many(server, 3)
        source = app_dir / "ws_dev.py"
        source.write_text(source.read_text().replace('"v1"', '"v2"'))
        assert await closes(clients) == [1012] * 3
        replacement = await open_ws(server)
        assert replacement.pid not in {c.pid for c in clients}
        replacement.conn.close()

    asyncio.run(main())
    assert server.stop() == 0


def test_status_and_metrics_count_open_websockets_per_worker(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    control = tmp_path / "ctl.sock"
    server = launch(APP, "--workers", "2", "--control", str(control), "--metrics", "127.0.0.1:0")
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", server.log())
    assert match is not None
    metrics_port = int(match.group(1))

    def status() -> dict[int, int]:
        out = subprocess.run(
            [str(TORNADO_RUN), "status", "--control", str(control), "--json"],
            capture_output=True,
            text=True,
            timeout=10,
            env=clean_env(),
            check=True,
        ).stdout
        return {w["pid"]: w["websockets"] for w in json.loads(out)["workers"]}

    def metrics() -> dict[int, float]:
        text = http_get(metrics_port, "/metrics").body.decode()
        series = r'tornado_run_worker_open_websockets\{worker="\d+",pid="(\d+)"\} (\S+)'
        found = re.findall(series, text)
        return {int(pid): float(value) for pid, value in found}

    async def main() -> None:
        clients = await open_many(server, 5)
        expected = {pid: sum(1 for c in clients if c.pid == pid) for pid in server.worker_pids()}
        await in_thread(wait_until, lambda: status() == expected, 10, f"status {expected}")
        assert metrics() == {pid: float(n) for pid, n in expected.items()}
        clients[0].conn.close()
        expected[clients[0].pid] -= 1
        await in_thread(wait_until, lambda: status() == expected, 10, f"status {expected}")
        table = await in_thread(
            subprocess.run,
            [str(TORNADO_RUN), "status", "--control", str(control)],
            capture_output=True,
            text=True,
            timeout=10,
            env=clean_env(),
        )
        assert "WEBSOCKETS" in table.stdout.splitlines()[1]

    asyncio.run(main())
    assert server.stop() == 0


def test_without_a_master_term_sends_going_away(launch: Callable[..., Server]) -> None:
    server = launch(APP, "--no-master", *SLOW_DRAIN)

    async def main() -> None:
        clients = await open_many(server, 3)
        assert {c.pid for c in clients} == {server.pid}
        server.send_signal(signal.SIGTERM)
        assert await closes(clients) == [1001] * 3
        assert await in_thread(server.wait, STOP_BOUND) == 0

    asyncio.run(main())
