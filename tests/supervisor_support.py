"""Run a real supervisord for a test: temporary config, socket and logs under tmp_path.

supervisord runs in the foreground as a child of the test (nodaemon) and is stopped by pid at
teardown; every process it started is checked (and, if still there, killed by pid) so no test
leaves a process behind. Actions go through `supervisorctl -c <conf>` as an operator would;
state is polled over supervisord's XML-RPC socket, which is faster than forking supervisorctl.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from runner_support import free_port as free_port  # re-exported for the supervisord tests
from runner_support import wait_until
from supervisor.xmlrpc import SupervisorTransport

BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
SUPERVISORCTL = BIN / "supervisorctl"
TORNADO_RUN = BIN / "tornado-run"
APPS = Path(__file__).resolve().parent / "apps_supervisor"


wait_for = wait_until  # the runner tests' poller, under the name these tests use


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """GET on a fresh loopback connection; returns (status, decoded JSON body or {})."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        decoded = {"raw": body.decode(errors="replace")}
    return response.status, decoded


def try_get(port: int, path: str = "/", timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON body of a 200 answer, or None if nothing answers (yet)."""
    try:
        status, body = http_get(port, path, timeout)
    except OSError:
        return None
    return body if status == 200 else None


def is_gone(proc: psutil.Process) -> bool:
    """True once `proc` has exited (a zombie waiting for a reaper counts as exited)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def tree(pid: int) -> list[psutil.Process]:
    """`pid` and all its descendants that exist now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class ClientLoop:
    """Sends GETs one after another from a thread until stopped; records every outcome."""

    port: int
    path: str = "/"
    pids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ClientLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if the test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = http_get(self.port, self.path, timeout=10)
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"status {status}: {body}")
            else:
                self.pids.append(int(body["pid"]))
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "client loop did not finish"


class Supervisord:
    """One supervisord with the given program sections, rooted in `workdir`."""

    def __init__(self, workdir: Path, sections: str) -> None:
        self.workdir = workdir
        self.sock = workdir / "supervisor.sock"
        self.conf = workdir / "supervisord.conf"
        self.log = workdir / "supervisord.log"
        self.conf.write_text(self._base_config() + "\n" + sections)
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, psutil.Process] = {}

    def _base_config(self) -> str:
        return (
            "[supervisord]\n"
            f"logfile={self.log}\n"
            f"pidfile={self.workdir / 'supervisord.pid'}\n"
            f"childlogdir={self.workdir}\n"
            "nodaemon=true\n"
            "loglevel=debug\n"
            "[unix_http_server]\n"
            f"file={self.sock}\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            "[supervisorctl]\n"
            f"serverurl=unix://{self.sock}\n"
        )

    def start(self) -> Supervisord:
        self.proc = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        wait_for(self._answers, 15, "supervisord to answer on its socket")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"supervisord exited {self.proc.returncode}: {self.log_text()}")
        try:
            self.rpc().supervisor.getState()
        except (OSError, xmlrpc.client.Fault):
            return False
        return True

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `supervisorctl -c <conf> ARGS` and return its result."""
        return subprocess.run(
            [str(SUPERVISORCTL), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def info(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.rpc().supervisor.getProcessInfo(name)
        if info.get("pid"):
            self._remember(int(info["pid"]))
        return info

    def wait_state(self, name: str, state: str, timeout: float) -> dict[str, Any]:
        """Wait until program `name` is in `state` (e.g. RUNNING, FATAL); return its info."""

        def reached() -> dict[str, Any] | None:
            info = self.info(name)
            return info if info["statename"] == state else None

        try:
            result: dict[str, Any] = wait_for(reached, timeout, f"{name} to be {state}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now {self.info(name)}; log:\n{self.log_text()}") from None
        return result

    def remember_tree(self, pid: int) -> list[psutil.Process]:
        """Snapshot `pid`'s process tree now and keep it for the teardown check."""
        procs = tree(pid)
        for proc in procs:
            self.seen.setdefault(proc.pid, proc)
        return procs

    def _remember(self, pid: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.seen.setdefault(pid, psutil.Process(pid))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def explain(self, tail: int = 4000) -> str:
        """The end of supervisord's log and of every program log, for a failure message."""
        parts = [f"--- supervisord log:\n{self.log_text()[-tail:]}"]
        for path in sorted(self.workdir.glob("*.log")):
            if path != self.log:
                parts.append(f"--- {path.name}:\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def spawn_count(self, name: str) -> int:
        """How many times supervisord has spawned `name` (from its own log)."""
        return self.log_text().count(f"spawned: '{name}'")

    def shutdown(self) -> list[int]:
        """Stop supervisord (TERM, then KILL) and every process it ran; return the pids that
        had to be killed because they outlived it."""
        if self.proc is None:
            return []
        if self.proc.poll() is None:
            self.remember_tree(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        leftovers = []
        for pid, proc in self.seen.items():
            if pid != self.proc.pid and not is_gone(proc):
                leftovers.append(pid)
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        return leftovers


@contextlib.contextmanager
def running_supervisord(workdir: Path, sections: str) -> Iterator[Supervisord]:
    """A started supervisord; at exit it is stopped and no process it ran may remain."""
    sup = Supervisord(workdir, sections)
    try:
        yield sup.start()
    except BaseException:
        print(sup.explain())  # pytest shows it with the failure
        raise
    finally:
        leftovers = sup.shutdown()
    assert not leftovers, f"processes outlived supervisord: {leftovers}"


def program_section(
    name: str,
    command: str,
    workdir: Path,
    *,
    startsecs: int = 1,
    startretries: int = 2,
    stopwaitsecs: int = 20,
    extra: str = "",
) -> str:
    """A [program:x] section with the settings conf/supervisord.conf recommends."""
    return (
        f"[program:{name}]\n"
        f"command={command}\n"
        f"directory={workdir}\n"
        "stopsignal=TERM\n"
        f"stopwaitsecs={stopwaitsecs}\n"
        "stopasgroup=true\n"
        "killasgroup=true\n"
        "autostart=true\n"
        "autorestart=unexpected\n"
        "exitcodes=0\n"
        f"startsecs={startsecs}\n"
        f"startretries={startretries}\n"
        "redirect_stderr=true\n"
        f"stdout_logfile={workdir / (name + '.log')}\n"
        'environment=PYTHONUNBUFFERED="1"\n'
        f"{extra}"
    )


def tornado_run_command(app: str, *args: str) -> str:
    """The tornado-run command line for an app in tests/apps_supervisor."""
    return " ".join([str(TORNADO_RUN), app, "--app-dir", str(APPS), *args])
