"""systemd's readiness protocol: a unix datagram socket here stands in for systemd (that is
all systemd reads) and receives READY=1 once the workers serve, RELOADING=1 then READY=1 for
a HUP (completed or abandoned), STOPPING=1 on TERM, INT and QUIT, readable STATUS= lines, and
WATCHDOG=1 from the master's loop while it runs. Without NOTIFY_SOCKET nothing is sent, and
workers never see the variables."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from runner_support import APPS, TORNADO_RUN, Server, clean_env, wait_until

Message = dict[str, str]


class FakeSystemd:
    """A bound AF_UNIX datagram socket that collects the master's notifications."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # the NOTIFY_SOCKET value
        self.received: list[Message] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address, **extra}

    def drain(self) -> list[Message]:
        """Read every datagram waiting now; returns the new ones (also kept in `received`)."""
        new: list[Message] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            lines = data.decode().split("\n")
            new.append(dict(line.partition("=")[::2] for line in lines))
        self.received += new
        return new

    def wait_for(self, key: str, timeout: float = 30.0, after: int = 0) -> Message:
        """The first message from index `after` on that has `key`, waiting up to `timeout`."""

        def found() -> Message | None:
            self.drain()
            return next((m for m in self.received[after:] if key in m), None)

        return wait_until(found, timeout, f"a {key} message")

    def events(self) -> list[str]:
        """The state changes received, in order: READY, RELOADING, STOPPING."""
        kinds = ("READY", "RELOADING", "STOPPING")
        return [k for m in self.received for k in kinds if k in m]


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        address = f"@tornado-run-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + address[1:])
    sock.setblocking(False)
    with sock:
        yield FakeSystemd(sock, address)


@pytest.fixture
def path_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.setblocking(False)
        yield FakeSystemd(sock, str(tmp_path / "notify.sock"))


def _write_app(folder: Path, version: str) -> None:
    source = (APPS / "hello.py").read_text().replace('VERSION = "v1"', f'VERSION = "{version}"')
    (folder / "reload_app.py").write_text(source)


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.timeout(90)
def test_systemd_hears_ready_reloading_ready_and_stopping_in_order(
    launch: Callable[..., Server], systemd: FakeSystemd
) -> None:
    server = launch("hello:application", "--workers", "2", env=systemd.env())
    ready = systemd.wait_for("READY")
    assert ready["MAINPID"] == str(server.pid)
    assert "2 of 2 worker(s) serving" in ready["STATUS"]
    assert server.get_json("/pid")[0] == 200
    assert all(set(m) == {"STATUS"} for m in systemd.received[:-1])  # nothing else before

    before = len(systemd.received)
    sent_at = _monotonic_usec()
    server.send_signal(signal.SIGHUP)
    reloading = systemd.wait_for("RELOADING", after=before)
    assert sent_at <= int(reloading["MONOTONIC_USEC"]) <= _monotonic_usec()
    assert reloading["STATUS"].startswith("Reloading to generation 1")
    index = systemd.received.index(reloading)
    done = systemd.wait_for("READY", after=index)
    assert done["STATUS"].startswith("Reload to generation 1 complete: 2 of 2 worker(s)")
    server.wait_for_log(r"Reload complete")

    server.send_signal(signal.SIGTERM)
    stopping = systemd.wait_for("STOPPING", after=systemd.received.index(done))
    assert stopping["STATUS"].startswith("Stopping gracefully")
    assert server.wait(30) == 0
    systemd.drain()
    assert systemd.events() == ["READY", "RELOADING", "READY", "STOPPING"]


@pytest.mark.timeout(90)
def test_an_abandoned_reload_tells_systemd_it_is_ready_again_and_why(
    launch: Callable[..., Server], path_systemd: FakeSystemd, tmp_path: Path
) -> None:
    systemd = path_systemd
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    _write_app(app_dir, "v1")
    server = launch("reload_app:application", "--workers", "2", app_dir=app_dir, env=systemd.env())
    systemd.wait_for("READY")
    (app_dir / "reload_app.py").write_text("def broken(:\n    pass\n")
    server.send_signal(signal.SIGHUP)
    reloading = systemd.wait_for("RELOADING")
    abandoned = systemd.wait_for("READY", after=systemd.received.index(reloading))
    assert abandoned["STATUS"].startswith("Reload to generation 1 abandoned (cannot import")
    assert "syntax error in" in abandoned["STATUS"]
    assert "), old workers kept: 2 of 2 worker(s) serving (generation 0)" in abandoned["STATUS"]
    assert server.get_json("/pid")[1]["version"] == "v1"

    _write_app(app_dir, "v2")
    shutil.rmtree(app_dir / "__pycache__", ignore_errors=True)
    mark = systemd.received.index(abandoned)
    server.send_signal(signal.SIGHUP)
    retried = systemd.wait_for("RELOADING", after=mark)
    done = systemd.wait_for("READY", after=systemd.received.index(retried))
    assert done["STATUS"].startswith("Reload to generation 2 complete")
    assert server.get_json("/pid")[1]["version"] == "v2"
    server.send_signal(signal.SIGINT)
    systemd.wait_for("STOPPING", after=systemd.received.index(done))
    assert server.wait(30) == 0
    systemd.drain()
    assert systemd.events() == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]


@pytest.mark.timeout(60)
def test_quit_sends_stopping(launch: Callable[..., Server], path_systemd: FakeSystemd) -> None:
    server = launch("hello:application", "--workers", "1", env=path_systemd.env())
    path_systemd.wait_for("READY")
    server.send_signal(signal.SIGQUIT)
    assert path_systemd.wait_for("STOPPING")["STATUS"].startswith("Stopping now")
    assert server.wait(30) == 0


def _watchdog_pings(systemd: FakeSystemd, seconds: float) -> int:
    systemd.drain()
    time.sleep(seconds)
    return sum(1 for m in systemd.drain() if m.get("WATCHDOG") == "1")


@pytest.mark.timeout(60)
def test_the_master_pings_the_watchdog_at_half_the_interval_and_not_while_stopped(
    launch: Callable[..., Server], path_systemd: FakeSystemd
) -> None:
    systemd = path_systemd
    server = launch("hello:application", "--workers", "1", env=systemd.env(WATCHDOG_USEC="1000000"))
    systemd.wait_for("READY")
    assert 4 <= _watchdog_pings(systemd, 4.0) <= 12  # every 0.5 s: about 8
    master = psutil.Process(server.pid)
    server.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: master.status() == psutil.STATUS_STOPPED, 10, "the master to stop")
        assert _watchdog_pings(systemd, 2.0) == 0
    finally:
        server.send_signal(signal.SIGCONT)
    systemd.wait_for("WATCHDOG", timeout=5, after=len(systemd.received))
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_a_watchdog_meant_for_another_pid_is_not_pinged(
    launch: Callable[..., Server], path_systemd: FakeSystemd
) -> None:
    env = path_systemd.env(WATCHDOG_USEC="400000", WATCHDOG_PID="1")
    server = launch("hello:application", "--workers", "1", env=env)
    path_systemd.wait_for("READY")
    assert _watchdog_pings(path_systemd, 1.5) == 0
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_workers_do_not_see_notify_socket_or_the_watchdog(
    launch: Callable[..., Server], path_systemd: FakeSystemd
) -> None:
    env = path_systemd.env(WATCHDOG_USEC="5000000")
    server = launch("hello:application", "--workers", "2", env=env)
    path_systemd.wait_for("READY")
    for _ in range(4):
        _, seen = server.get_json("/env")
        assert "TORNADO_RUN_WORKER_COUNT" in seen  # the handler does show the environment
        assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(seen)
    assert server.stop() == 0


def _master_syscalls(tmp_path: Path, env: dict[str, str]) -> str:
    """strace of the master alone (not its workers) through start, HUP and TERM."""
    trace = tmp_path / "master.strace"
    command = ["strace", "-qq", "-e", "trace=socket,sendto", "-o", str(trace)]
    command += [str(TORNADO_RUN), "hello:application", "--app-dir", str(APPS)]
    command += ["--workers", "1", "--bind", "127.0.0.1:0"]
    log = tmp_path / "master.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=clean_env(env))
    try:
        wait_until(lambda: "Ready:" in log.read_text(), 30, "the server to be ready")
        master = psutil.Process(proc.pid).children()[0]
        master.send_signal(signal.SIGHUP)
        wait_until(lambda: "Reload complete" in log.read_text(), 30, "the reload")
        master.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return trace.read_text()


@pytest.mark.timeout(90)
def test_without_notify_socket_nothing_is_sent(tmp_path: Path, path_systemd: FakeSystemd) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    quiet = _master_syscalls(tmp_path, {"WATCHDOG_USEC": "400000"})
    assert "SOCK_DGRAM" not in quiet and "sendto(" not in quiet
    told = _master_syscalls(tmp_path, path_systemd.env(WATCHDOG_USEC="400000"))
    assert "SOCK_DGRAM" in told and "READY=1" in told  # the trace does see notifications


@pytest.mark.timeout(60)
def test_no_master_warns_that_it_does_not_notify(
    launch: Callable[..., Server], path_systemd: FakeSystemd
) -> None:
    server = launch("hello:application", "--no-master", env=path_systemd.env(), wait_ready=False)
    server.wait_for_log(r"--no-master does not notify systemd")
    assert server.get_json("/pid")[0] == 200
    assert path_systemd.drain() == []
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_an_unreachable_notify_socket_is_one_warning_and_the_server_runs_on(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "200000"}
    server = launch("hello:application", "--workers", "1", env=env)
    server.wait_for_log(r"cannot notify systemd at")
    time.sleep(1.0)  # ten watchdog pings' worth
    assert server.get_json("/pid")[0] == 200
    assert server.log().count("cannot notify systemd") == 1
    assert server.stop() == 0


@pytest.mark.timeout(60)
def test_an_unsupported_notify_socket_kind_is_named_and_ignored(
    launch: Callable[..., Server],
) -> None:
    server = launch("hello:application", "--workers", "1", env={"NOTIFY_SOCKET": "vsock:2:9"})
    assert "NOTIFY_SOCKET='vsock:2:9': only path and @abstract sockets" in server.log()
    assert server.get_json("/pid")[0] == 200
    assert server.stop() == 0
