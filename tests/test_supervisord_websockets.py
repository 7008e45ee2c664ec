"""WebSockets under a real supervisord: `supervisorctl signal HUP` closes them with 1012 and
reconnects reach the new workers; `supervisorctl stop` (TERM to the whole group) closes them
with 1001 and the program stops cleanly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psutil
import pytest
from runner_support import APPS
from supervisor_support import (
    TORNADO_RUN,
    free_port,
    is_gone,
    program_section,
    running_supervisord,
    try_get,
    wait_for,
)
from tornado.websocket import WebSocketClientConnection, websocket_connect

NAME = "ws"


async def open_ws(port: int) -> tuple[WebSocketClientConnection, int]:
    conn = await websocket_connect(f"ws://127.0.0.1:{port}/ws")
    first = await conn.read_message()
    assert isinstance(first, str)
    return conn, int(json.loads(first)["pid"])


async def close_codes(conns: list[WebSocketClientConnection]) -> list[int | None]:
    async def one(conn: WebSocketClientConnection) -> int | None:
        while await conn.read_message() is not None:
            pass
        return conn.close_code

    return list(await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), 20))


def workers(master: int) -> set[int]:
    return {p.pid for p in psutil.Process(master).children() if not is_gone(p)}


@pytest.mark.timeout(120)
def test_websockets_get_1012_on_signal_hup_and_1001_on_stop(tmp_path: Path) -> None:
    port = free_port()
    command = " ".join(
        [
            str(TORNADO_RUN),
            "ws_app:application",
            "--app-dir",
            str(APPS),
            "--workers 2",
            f"--bind 127.0.0.1:{port}",
            "--graceful-timeout 60",
        ]
    )
    section = program_section(NAME, command, tmp_path, stopwaitsecs=70)
    with running_supervisord(tmp_path, section) as sup:
        master = int(sup.wait_state(NAME, "RUNNING", 30)["pid"])
        wait_for(lambda: try_get(port, "/pid"), 20, "an answer")
        wait_for(lambda: len(workers(master)) == 2, 20, "two workers")
        old = workers(master)
        sup.remember_tree(master)

        async def main() -> None:
            first = [await open_ws(port) for _ in range(4)]
            assert {pid for _, pid in first} <= old
            hup = await asyncio.to_thread(sup.ctl, "signal", "HUP", NAME)
            assert "signalled" in hup.stdout, hup.stdout + hup.stderr
            assert await close_codes([c for c, _ in first]) == [1012] * 4

            def replaced() -> bool:
                sup.remember_tree(master)
                current = workers(master)
                return len(current) == 2 and not current & old

            await asyncio.to_thread(wait_for, replaced, 40, "the old workers to be replaced")
            second = [await open_ws(port) for _ in range(4)]
            assert not {pid for _, pid in second} & old
            stop: Any = asyncio.ensure_future(asyncio.to_thread(sup.ctl, "stop", NAME))
            assert await close_codes([c for c, _ in second]) == [1001] * 4
            stopped = await stop
            assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr

        asyncio.run(main())
        info = sup.info(NAME)
        assert (info["statename"], info["exitstatus"]) == ("STOPPED", 0)
