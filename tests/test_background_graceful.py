"""End to end under a real `tornado-run`: TERM waits for a pending background job, then the
worker's pools are closed and their processes are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from decorators_support import free_port
from runner_support import pid_exited

APP = """
import asyncio, os
from pathlib import Path

import tornado.web

from tornado_run.decorators import background, unblock

OUT = Path(os.environ["BG_OUT"])


async def slow_job():
    await asyncio.sleep(1.0)
    OUT.write_text("job done")


@unblock(pool="process")
def pool_pid():
    return os.getpid()


class Start(tornado.web.RequestHandler):
    def get(self):
        background(slow_job)
        self.write("started")


class PoolPid(tornado.web.RequestHandler):
    async def get(self):
        self.write(str(await pool_pid()))


application = tornado.web.Application([("/start", Start), ("/pool", PoolPid)])
"""


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as answer:
        return str(answer.read().decode())


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            return get(port, "/pool")
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"tornado-run never answered:\n{log.read_text()}")


@pytest.mark.timeout(90)
def test_term_waits_for_a_background_job_then_closes_the_pools(tmp_path: Path) -> None:
    (tmp_path / "bgapp.py").write_text(textwrap.dedent(APP))
    out, log, port = tmp_path / "out.txt", tmp_path / "log.txt", free_port()
    command = [
        str(Path(sys.executable).with_name("tornado-run")),
        "bgapp:application",
        "--workers=1",
        f"--bind=127.0.0.1:{port}",
        f"--app-dir={tmp_path}",
        "--graceful-timeout=20",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "BG_OUT": str(out)}
        )
    try:
        pool_pid = int(wait_ready(process, port, log))
        assert get(port, "/start") == "started"
        os.kill(process.pid, signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 0, log.read_text()
    assert out.read_text() == "job done", log.read_text()
    assert pid_exited(pool_pid)
