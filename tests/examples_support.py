"""Run an example app under a real `tornado-run` on an ephemeral loopback port, and talk to it.

Plain module imported by tests/test_examples_*.py and tests/test_bench_quick.py.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
from runner_support import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
TORNADO_RUN = Path(sys.executable).with_name("tornado-run")


def example_module(name: str) -> ModuleType:
    """Import `examples.NAME` (the repository root is not on sys.path under every runner)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"examples.{name}")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    """A running example: its port, process and log."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 20.0,
    ) -> Response:
        """One request on a fresh connection; the lower-case header names map to values."""
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            data = answer.read()
            found = {name.lower(): value for name, value in answer.getheaders()}
            return Response(answer.status, found, data, time.monotonic() - started)
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 20.0) -> Response:
        return self.request("GET", path, timeout=timeout)


def _wait_ready(served: Served, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(
                f"tornado-run exited with {served.process.returncode}:\n{served.log()[-3000:]}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            served.get(ready_path, timeout=2)
            return
        time.sleep(0.05)
    raise AssertionError(f"tornado-run did not answer within {timeout} s:\n{served.log()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(tree, timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    assert not alive, f"processes still alive 15 s after SIGTERM: {[p.pid for p in alive]}"


@contextlib.contextmanager
def serve(
    app: str,
    *options: str,
    workers: str = "1",
    env: dict[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 30.0,
) -> Iterator[Served]:
    """Run `tornado-run APP --workers N --bind 127.0.0.1:PORT [options]` from the repository
    root (as the README does); stop it with SIGTERM and check its whole tree is gone."""
    port = free_port()
    handle, name = tempfile.mkstemp(prefix="example-", suffix=".log")
    os.close(handle)
    log_path = Path(name)
    command = [str(TORNADO_RUN), app, "--workers", workers, "--bind", f"127.0.0.1:{port}"]
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [*command, *options],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(port, process, log_path)
    try:
        _wait_ready(served, ready_path, timeout)
        yield served
    finally:
        _stop(process)
        log_path.unlink(missing_ok=True)


class InFlight(threading.Thread):
    """A request running in the background; `result` is set when it completes."""

    def __init__(self, served: Served, path: str) -> None:
        super().__init__(daemon=True)
        self.served, self.path = served, path
        self.result: Response | None = None
        self.finished_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.served.get(self.path, timeout=30)
        except BaseException as err:  # reported by the test through .error
            self.error = err
        self.finished_at = time.monotonic()

    def wait(self, timeout: float = 30.0) -> Response:
        self.join(timeout)
        assert self.result is not None, f"request {self.path} failed: {self.error!r}"
        return self.result


def assert_held_up(fast: Response, fast_sent: float, slow: InFlight) -> None:
    """Check the fast request was answered only when the slow one ended: it lasted at least
    half of what the slow request still had to run when the fast one was sent (the half is
    slack; a free loop would answer in milliseconds)."""
    slow.wait()
    assert slow.finished_at is not None
    remaining = slow.finished_at - fast_sent
    assert fast.seconds >= 0.5 * remaining, (
        f"the fast request took {fast.seconds:.3f} s while the slow one ran {remaining:.3f} s "
        "longer: it was not held up"
    )
