"""Helpers for the production-master tests: the test app's folder, status over the control
socket, connection spread over keep-alive connections, and a bounded client load that counts
failed requests. Servers are started with conftest's `launch` (runner_support.start_server)."""

from __future__ import annotations

import http.client
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from runner_support import Load as Load  # re-exported: the prod tests drive load with it
from tornado_run.runner.control import control_socket as control
from tornado_run.runner.control.snapshot import Snapshot

PROD_APPS = Path(__file__).resolve().parent / "apps_supervision"
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


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
