"""HUP: a rolling reload under continuous client load loses no request, and serves the code
that is on disk now; a replacement that cannot boot leaves the old workers serving."""

from __future__ import annotations

import http.client
import select
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_support import APPS, Server, wait_until

HUPS = 4


class Load:
    """Bounded client loops on loopback: one opens a connection per request, one keeps its
    connection alive (reconnecting when the server says `Connection: close` or has closed the
    idle connection, as HTTP clients do)."""

    def __init__(self, port: int, seconds: float = 60.0) -> None:
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.last_version = ""
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._fresh, daemon=True),
            threading.Thread(target=self._keep_alive, daemon=True),
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def _record(self, response: http.client.HTTPResponse) -> None:
        body = response.read()
        with self.lock:
            if response.status == 200:
                self.ok += 1
                version = body.decode().split('"version": "')[1].split('"')[0]
                self.versions[version] += 1
                self.last_version = version
            else:
                self.failures.append(f"status {response.status}")

    def _fresh(self) -> None:
        while self.running():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/pid")
                self._record(conn.getresponse())
            except OSError as exc:
                self.failures.append(f"fresh: {exc!r}")
            finally:
                conn.close()

    def _keep_alive(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while self.running():
            if conn is not None and conn.sock is not None and _dropped(conn):
                conn.close()
                conn = None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/pid")
                response = conn.getresponse()
                self._record(response)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError as exc:
                self.failures.append(f"keep-alive: {exc!r}")
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The server closed this idle connection (readable with nothing to read)."""
    assert conn.sock is not None
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


def _wait_for_new_workers_and_traffic(server: Server, before: set[int], load: Load) -> None:
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    served = load.ok
    wait_until(lambda: load.ok > served + 20, 10, "requests after the reload")


def _write_app(folder: Path, version: str) -> None:
    source = (APPS / "hello.py").read_text().replace('VERSION = "v1"', f'VERSION = "{version}"')
    (folder / "reload_app.py").write_text(source)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "socket_mode",
    [
        pytest.param("--no-reuse-port", id="shared-socket"),
        pytest.param("--reuse-port", id="reuse-port"),
    ],
)
def test_hup_reloads_under_load_without_failed_requests_and_serves_new_code(
    launch: Callable[..., Server], tmp_path: Path, socket_mode: str
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _write_app(app_dir, "v1")
    server = launch("reload_app:application", "--workers", "2", socket_mode, app_dir=app_dir)
    assert server.port is not None
    with Load(server.port) as load:
        wait_until(lambda: load.ok > 20, 10, "load to start")
        for round_number in range(1, HUPS + 1):
            before = server.worker_pids()
            if round_number == 2:
                _write_app(app_dir, "v2-changed-on-disk")
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Reload complete", timeout=30, count=round_number)
            _wait_for_new_workers_and_traffic(server, before, load)
        assert load.last_version == "v2-changed-on-disk"
    assert load.failures == []
    assert load.ok > 100
    assert load.versions["v1"] > 0 and load.versions["v2-changed-on-disk"] > 0
    assert server.stop() == 0


def test_a_replacement_that_cannot_boot_leaves_the_old_workers_serving(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _write_app(app_dir, "v1")
    server = launch("reload_app:application", "--workers", "2", app_dir=app_dir)
    before = server.worker_pids()
    (app_dir / "reload_app.py").write_text("def broken(:\n    pass\n")
    server.send_signal(signal.SIGHUP)
    log = server.wait_for_log(r"reload abandoned")
    assert "syntax error in" in log
    assert server.worker_pids() == before
    for _ in range(10):
        status, body = server.get_json("/pid")
        assert status == 200 and body["version"] == "v1"
    # Fixed code on disk: the next HUP completes.
    _write_app(app_dir, "v3")
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload complete", timeout=30)
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    assert server.get_json("/pid")[1]["version"] == "v3"
    shutil.rmtree(app_dir / "__pycache__", ignore_errors=True)
