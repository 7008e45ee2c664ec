"""Serving on every kind of listening socket: unix, fd://N, --no-master on fd://0 (the
supervisord fcgi-program way), systemd socket activation, IPv6 loopback."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runner_support import APPS, TORNADO_RUN, Server, clean_env, http_get, start_server


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening loopback socket owned by the test (as supervisord or systemd would)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def test_serves_on_a_unix_socket_with_its_mode(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    path = tmp_path / "app.sock"
    server = launch("hello:application", "--workers", "2", bind=f"unix:{path}?mode=0600")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status, body = server.get_json("/pid")
    assert status == 200
    assert body["pid"] in server.worker_pids()
    assert server.stop() == 0
    assert not path.exists()  # removed at exit


def test_a_stale_unix_socket_file_is_replaced_but_a_live_one_is_refused(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listening
    server = launch("hello:application", bind=f"unix:{path}")
    assert server.get_json("/pid")[0] == 200
    second = launch("hello:application", bind=f"unix:{path}", wait_ready=False)
    assert second.wait(20) == 2
    assert "address already in use" in second.log()
    assert server.get_json("/pid")[0] == 200  # the first server still owns it


def test_serves_on_an_inherited_fd(launch: Callable[..., Server], listener: socket.socket) -> None:
    fd = listener.fileno()
    server = launch("hello:application", "--workers", "2", bind=f"fd://{fd}", pass_fds=[fd])
    port = listener.getsockname()[1]
    reply = http_get(port, "/pid")
    assert reply.status == 200
    assert reply.json()["pid"] in server.worker_pids()


def test_no_master_serves_fd0_and_drains_on_term(
    launch: Callable[..., Server], listener: socket.socket
) -> None:
    server = launch("hello:application", "--no-master", bind="fd://0", stdin=listener.fileno())
    port = listener.getsockname()[1]
    body = http_get(port, "/pid").json()
    assert body["pid"] == server.pid  # served by the process itself: no fork
    assert server.workers() == []
    assert server.stop() == 0


def test_systemd_socket_activation_when_no_bind_is_given(
    listener: socket.socket, tmp_path: Path
) -> None:
    log_path = tmp_path / "systemd.log"
    # sh moves the socket to fd 3 and sets LISTEN_PID to its own pid, which exec keeps.
    script = 'exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            ["sh", "-c", script, str(TORNADO_RUN), "hello:application", "--app-dir", str(APPS)],
            stdin=listener.fileno(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            start_new_session=True,
        )
    with Server(proc, log_path) as server:
        server.wait_for_log(r"Ready:")
        port = listener.getsockname()[1]
        assert f"Listening at http://127.0.0.1:{port}" in server.log()
        body = http_get(listener.getsockname()[1], "/pid").json()
        assert body["pid"] in server.worker_pids()
        # The workers must not see LISTEN_* (they would try to adopt fd 3 again).
        assert not any(
            k.startswith("LISTEN_") for k in http_get(listener.getsockname()[1], "/env").json()
        )
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_serves_on_ipv6_loopback(tmp_path: Path) -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 is not configured")
    with start_server("hello:application", bind="[::1]:0", log_dir=tmp_path) as server:
        assert server.host == "::1"
        assert server.get_json("/pid")[0] == 200


def test_port_zero_is_resolved_once_for_all_workers(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--workers", "2")
    assert server.port and server.port > 0
    assert server.log().count("Listening at") == 1
    assert os.getpid() != server.pid


def test_a_unix_socket_can_be_given_to_a_group(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    """`group=` beside `mode=`: the socket file belongs to that group before anyone connects."""
    gid = os.getgroups()[-1] if os.getuid() != 0 else 33  # root may pick any group
    path = tmp_path / "app.sock"
    server = launch("hello:application", bind=f"unix:{path}?mode=0660&group={gid}")
    info = path.stat()
    assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o660)
    assert server.get_json("/pid")[0] == 200
    assert server.stop() == 0
    assert not path.exists()
