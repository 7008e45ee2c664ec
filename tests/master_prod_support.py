"""Helpers for the production-master tests: the test app's folder, status over the control
socket, connection spread over keep-alive connections, and a bounded client load that counts
failed requests. Servers are started with conftest's `launch` (runner_support.start_server)."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tornado_run.runner import control
from tornado_run.runner.snapshot import Snapshot

PROD_APPS = Path(__file__).resolve().parent / "apps_master_prod"
PRODAPP = PROD_APPS / "prodapp.py"


def line_of(marker: str, path: Path = PRODAPP) -> int:
    """The line number of the line ending with `# MARKER` in `path`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker} in {path}")


def status(control_path: Path) -> Snapshot:
    """The master's snapshot through its control socket."""
    return control.query(control_path, timeout=10)


def get_pid(port: int, path: str = "/pid", timeout: float = 10) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:200])
        result: dict[str, Any] = json.loads(body)
        return result
    finally:
        conn.close()


def connection_spread(port: int, connections: int = 64) -> Counter[int]:
    """Open `connections` keep-alive connections at once, send one request on each and count
    which worker pid answered each; all stay open until every one has answered."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(connections)]
    try:
        for conn in conns:
            conn.connect()
        pids: Counter[int] = Counter()
        for conn in conns:
            conn.request("GET", "/pid")
            response = conn.getresponse()
            pids[json.loads(response.read())["pid"]] += 1
        return pids
    finally:
        for conn in conns:
            conn.close()


class Load:
    """`threads` client loops on loopback until stopped (bounded by `seconds`): fresh
    connections (`keep_alive=False`) or one keep-alive connection each that reconnects when
    the server answers `Connection: close`. Counts answers by pid and version, and failures."""

    def __init__(
        self, port: int, threads: int = 2, keep_alive: bool = False, seconds: float = 90
    ) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.pids: Counter[int] = Counter()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(15)

    def wait_for(self, count: int, timeout: float = 20) -> None:
        """Wait until `count` more requests succeeded."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            assert time.monotonic() < deadline, f"load stalled: {self.failures[:5]}"
            time.sleep(0.02)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            if conn is not None and conn.sock is not None and _closed_by_server(conn.sock):
                conn.close()  # an idle connection the server half-closed: reconnect, as clients do
                conn = None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/pid")
                response = conn.getresponse()
                self._record(response.status, response.read())
                if not self.keep_alive or response.getheader("Connection", "") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _record(self, status_code: int, body: bytes) -> None:
        with self.lock:
            if status_code != 200:
                self.failures.append(f"status {status_code}")
                return
            data = json.loads(body)
            self.ok += 1
            self.versions[data["version"]] += 1
            self.pids[data["pid"]] += 1


def _closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
