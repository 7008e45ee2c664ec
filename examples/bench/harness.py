"""Start, observe and stop the servers under test: any command that serves HTTP on a port.

A server is observed as a process tree (the root and every descendant), so the same figures
(CPU seconds, PSS, RSS) are comparable between tornado-run, raw `fork_processes` and gunicorn.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent


class Skip(Exception):
    """A row cannot run here; the message is the one line that says why and what to do."""


def executable(name: str) -> str | None:
    """Path of a command, preferring the one installed beside this Python (the venv)."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def tornado_run_command() -> list[str]:
    """How to start tornado-run: its console script, else `python -m tornado_run.runner`."""
    script = executable("tornado-run")
    return [script] if script else [sys.executable, "-m", "tornado_run.runner"]


def help_text(command: Sequence[str]) -> str:
    """`command --help` output ("" when it cannot run), to detect optional features."""
    try:
        done = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(
    port: int, path: str, timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """One GET on a fresh connection (HTTPS with `context`); returns (status, body) or raises
    OSError."""
    conn = (
        http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if context is None
        else http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    """One server under test: `command` must serve HTTP on 127.0.0.1:`port`."""

    name: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"
    term_whole_tree: bool = False  # True for servers whose workers ignore their parent's death
    ssl_context: ssl.SSLContext | None = None  # the server speaks HTTPS: the readiness client
    process: subprocess.Popen[bytes] | None = None
    _log: Path | None = None
    _cpu_seen: dict[int, float] = field(default_factory=dict)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until `ready_path` answers; raises Skip with the server's last
        error line when it exits or never answers."""
        if port_in_use(self.port):
            raise Skip(f"port {self.port} is already in use")
        handle, name = tempfile.mkstemp(prefix="bench-server-", suffix=".log")
        os.close(handle)
        self._log = Path(name)
        paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **self.env}
        with self._log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Skip(
                    f"{self.name} exited with code {self.process.returncode}: "
                    f"{self.last_log_line()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                http_get(self.port, self.ready_path, timeout=1.0, context=self.ssl_context)
                return
            time.sleep(0.05)
        self.stop()
        raise Skip(f"{self.name} did not answer within {timeout:.0f} s: {self.last_log_line()}")

    def last_log_line(self) -> str:
        if self._log is None:
            return ""
        lines = self.log_text().strip().splitlines()
        errors = [line for line in lines if re.match(r"\s*[\w.]*(Error|Exception)\b", line)]
        chosen = errors[-1] if errors else lines[-1] if lines else "(no output)"
        return chosen.strip()[:200]

    def log_text(self) -> str:
        if self._log is None:
            return ""
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def tree(self) -> list[psutil.Process]:
        """The root process and all its descendants that are still alive."""
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[int]:
        """Pids of the root's direct children (the workers, in a pre-fork server)."""
        procs = self.tree()
        return [p.pid for p in procs[0].children()] if procs else []

    def cpu_seconds(self) -> float:
        """User+system CPU seconds the tree has used; a process that has exited keeps the
        last figure seen for it, so call this before and after a measurement."""
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                self._cpu_seen[proc.pid] = times.user + times.system
        return sum(self._cpu_seen.values())

    def pss_mib(self) -> float:
        """Proportional set size summed over the tree, in MiB (shared pages counted once)."""
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_full_info().pss
        return total / 2**20

    def rss_mib(self) -> float:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2**20

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def stop(self, grace: float = 8.0) -> None:
        """TERM the root, wait up to `grace` seconds, then KILL whatever of the tree is left
        (raw `fork_processes` children outlive their parent, hence the whole tree)."""
        if self.process is None:
            return
        procs = self.tree()
        for proc in procs if self.term_whole_tree else procs[:1]:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None
        self.process = None


def warm_up(server: Server, path: str, seconds: float) -> None:
    """Load `path` for `seconds` (lazy pools start, caches fill); with 0, just a few requests."""
    from .loadgen import closed_loop  # loadgen imports this module

    if seconds > 0:
        closed_loop(f"http://127.0.0.1:{server.port}{path}", 8, seconds)
        return
    for _ in range(4):
        with contextlib.suppress(OSError, http.client.HTTPException):
            http_get(server.port, path, timeout=10)


@contextlib.contextmanager
def running(server: Server, timeout: float = 30.0) -> Iterator[Server]:
    """Start `server`, yield it, and stop it (and its whole tree) however the block ends."""
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
