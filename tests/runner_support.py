"""Start `tornado-run` for a test, talk to it over loopback, and stop it. Reusable by every
test module (import `runner_support`; conftest's `launch` fixture wraps `start_server`).

    server = start_server("hello:application", "--workers", "2")   # tests/apps, port 0
    status, body = server.get_json("/pid")
    assert server.stop() == 0                                        # TERM, bounded wait

The master binds `127.0.0.1:0` by default and its log line "Listening at http://HOST:PORT"
tells the port; `start_server` waits for the "Ready:" line (all workers serving). Output goes
to a log file (`server.log()`), so nothing blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

BIN = Path(sys.executable).parent
TORNADO_RUN = BIN / "tornado-run"
APPS = Path(__file__).resolve().parent / "apps"
T = TypeVar("T")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without TORNADO_RUN_*, WEB_CONCURRENCY, LISTEN_* or
    systemd's NOTIFY_SOCKET and WATCHDOG_* (a test run from a systemd unit)."""
    dropped = ("TORNADO_RUN_", "LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(dropped) and key != "WEB_CONCURRENCY"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_until(predicate: Callable[[], T], timeout: float, what: str, step: float = 0.05) -> T:
    """Poll until `predicate()` is truthy and return it; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def pid_exited(pid: int) -> bool:
    """True once `pid` has exited, whether or not its parent has reaped it yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def is_tier(proc: psutil.Process) -> bool:
    """True for the CPU tier's broker (named by setproctitle)."""
    try:
        return proc.cmdline()[:1] == ["tornado-run: cpu tier"]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return False


def free_port() -> int:
    """A loopback port that was free a moment ago (prefer binding port 0 where possible)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def http_get(
    port: int | None = None,
    path: str = "/",
    *,
    host: str = "127.0.0.1",
    unix: str | None = None,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Response:
    """One GET on a fresh connection (TCP `host:port`, or the unix socket `unix`)."""
    conn: http.client.HTTPConnection
    if unix is not None:
        conn = UnixHTTPConnection(unix, timeout)
    else:
        assert port is not None
        conn = http.client.HTTPConnection(
            host, port, timeout=timeout, source_address=(source, 0) if source else None
        )
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        reply = conn.getresponse()
        return Response(reply.status, dict(reply.getheaders()), reply.read())
    finally:
        conn.close()


@dataclass
class Server:
    """A running `tornado-run` started by `start_server`."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"
    port: int | None = None
    unix: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 15.0, count: int = 1) -> str:
        """Wait until the log matches regex `pattern` `count` times; return the log."""

        def found() -> str:
            text = self.log()
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"tornado-run exited ({self.proc.returncode}):\n{text}")
            return ""

        return wait_until(found, timeout, f"{pattern!r} in the log")

    def get(self, path: str = "/", timeout: float = 10.0, **kwargs: Any) -> Response:
        if self.unix is not None:
            return http_get(path=path, unix=self.unix, timeout=timeout, **kwargs)
        return http_get(self.port, path, host=self.host, timeout=timeout, **kwargs)

    def get_json(self, path: str = "/", timeout: float = 10.0) -> tuple[int, Any]:
        reply = self.get(path, timeout)
        return reply.status, reply.json()

    def workers(self) -> list[psutil.Process]:
        """The master's live child processes but its CPU tier."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return [
                child
                for child in psutil.Process(self.pid).children()
                if child.status() != psutil.STATUS_ZOMBIE and not is_tier(child)
            ]
        return []

    def tier(self) -> list[psutil.Process]:
        """The CPU tier's brokers (one; two while an old generation drains)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child for child in psutil.Process(self.pid).children() if is_tier(child)]
        return []

    def worker_pids(self) -> set[int]:
        return {child.pid for child in self.workers()}

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the master to exit; return its exit code."""
        code = self.proc.wait(timeout)
        self._stopped = True
        return code

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the master and wait for it; return its exit code (kills it on timeout)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.send_signal(signum)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the master and every process below it (cleanup)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = psutil.Process(self.pid).children(recursive=True)
            for proc in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._stopped = True

    def close(self) -> None:
        """Stop if still running: TERM, then kill after a bounded wait."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(timeout=15)
        if self.proc.poll() is None:
            self.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exits_before_listening(server: Server, timeout: float) -> bool:
    """True if tornado-run exits before its "Listening at" line."""

    def outcome() -> str:
        if "Listening at" in server.log():
            return "listening"
        return "exited" if server.proc.poll() is not None else ""

    return wait_until(outcome, timeout, "'Listening at' or an exit") == "exited"


def start_server(
    app: str = "hello:application",
    *args: str,
    app_dir: Path | str = APPS,
    bind: str | None = "127.0.0.1:0",
    env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 20.0,
    log_dir: Path | None = None,
    pass_fds: Sequence[int] = (),
    stdin: int | None = subprocess.DEVNULL,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    """Start `tornado-run APP --app-dir APP_DIR --bind BIND ARGS...` in its own session.

    `bind=None` passes no --bind; `preexec_fn` runs in the child before exec (e.g. to set a
    resource limit). Waits for the "Ready:" log line unless `wait_ready` is
    false; on failure the master is killed and the log is in the AssertionError.
    """
    folder = log_dir or Path(tempfile.mkdtemp(prefix="tornado-run-test-"))
    log_path = folder / f"tornado-run-{time.monotonic_ns()}.log"
    command = [str(TORNADO_RUN), app, "--app-dir", str(app_dir)]
    if bind is not None:
        command += ["--bind", bind]
    command += list(args)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=stdin,
            env=clean_env(env),
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            preexec_fn=preexec_fn,
        )
    server = Server(proc, log_path)
    try:
        if bind is not None and bind.startswith("unix:"):
            server.unix = bind[len("unix:") :].partition("?")[0]
        elif bind is not None and not bind.startswith("fd://"):
            if not wait_ready and _exits_before_listening(server, timeout):
                return server  # an app that cannot load stops before it announces
            text = server.wait_for_log(r"Listening at https?://\S+:\d+", timeout)
            match = re.search(r"Listening at https?://(\[[^\]]+\]|[^:\s]+):(\d+)", text)
            assert match is not None
            server.host, server.port = match.group(1).strip("[]"), int(match.group(2))
        if wait_ready:
            server.wait_for_log(r"Ready:", timeout)
    except BaseException:
        server.kill()
        raise
    return server


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path | str | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `tornado-run ARGS...` to completion (for --check, --help and bad input)."""
    return subprocess.run(
        [str(TORNADO_RUN), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        cwd=cwd,
        pass_fds=tuple(pass_fds),
        stdin=subprocess.DEVNULL,
    )


class Load:
    """Client loops on loopback until stopped (bounded by `seconds`) against `/pid`: `fresh`
    loops open a connection per request, `kept` loops hold one keep-alive connection each and
    reconnect when the server answers `Connection: close` or half-closes it, as HTTP clients
    do. Counts answers by pid and version (and the last version seen), and failures. With
    `ssl_context` it speaks HTTPS and also counts the serial numbers (hex) of the server
    certificates it was shown."""

    def __init__(
        self,
        port: int,
        fresh: int = 2,
        kept: int = 0,
        seconds: float = 90,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.serials: Counter[str] = Counter()
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.pids: Counter[int] = Counter()
        self.last_version = ""
        self._threads = [
            threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            for keep_alive in [False] * fresh + [True] * kept
        ]

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

    def _run(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            if conn is not None and conn.sock is not None and _closed_by_server(conn.sock):
                conn.close()  # an idle connection the server half-closed: reconnect, as clients do
                conn = None
            if conn is None:
                conn = self._connect()
            try:
                conn.request("GET", "/pid")
                response = conn.getresponse()
                self._record_certificate(conn.sock)
                self._record(response.status, response.read())
                if not keep_alive or response.getheader("Connection", "") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self.ssl_context is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=10, context=self.ssl_context
        )

    def _record_certificate(self, sock: socket.socket | None) -> None:
        if isinstance(sock, ssl.SSLSocket):
            cert = sock.getpeercert()
            with self.lock:
                self.serials[str(cert["serialNumber"]) if cert else "?"] += 1

    def _record(self, status_code: int, body: bytes) -> None:
        with self.lock:
            if status_code != 200:
                self.failures.append(f"status {status_code}")
                return
            data = json.loads(body)
            self.ok += 1
            self.versions[data["version"]] += 1
            self.last_version = data["version"]
            self.pids[data["pid"]] += 1


def _closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
