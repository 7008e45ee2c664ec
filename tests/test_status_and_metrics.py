"""Status over the control socket and Prometheus metrics, served by the master's non-blocking
PollServer (driven here by a test thread the way the master's loop drives it)."""

from __future__ import annotations

import http.client
import os
import select
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado_run.runner.control import control_socket as control
from tornado_run.runner.control import metrics, status
from tornado_run.runner.control.pollserver import PollServer
from tornado_run.runner.control.snapshot import Snapshot, WorkerSnapshot, worker_figures


def sample_snapshot() -> Snapshot:
    pools = {"thread": {"busy": 2, "queued": 5, "size": 4, "completed": 10, "kind": "thread"}}
    return Snapshot(
        master_pid=os.getpid(),
        uptime=125.0,
        workers=[
            WorkerSnapshot(0, 4242, age=61, requests=1000, in_flight=3, connections=40,
                           cap_hits=7, accept_refused=9, websockets=5, rss=50 * 2**20,
                           cpu_percent=12.5, max_lag_ms=310.0, blocked_episodes=2, pools=pools),
            WorkerSnapshot(1, 4343, age=5, state="booting"),
        ],
        restarts={"max-requests": 3, 'odd "reason"\n': 1},
    )  # fmt: skip


@contextmanager
def serving(server: PollServer) -> Iterator[PollServer]:
    """Drive `server.service()` from a thread until the block ends, as the master loop would."""
    stop = threading.Event()

    def drive() -> None:
        while not stop.is_set():
            # also on timeout, so client deadlines expire as they do in the master's loop
            select.select([server.fileno()], [], [], 0.05)
            server.service()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_metrics_text_parses_as_prometheus_with_every_worker() -> None:
    text = metrics.render(sample_snapshot())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["tornado_run_worker_requests"]
    assert requests.type == "counter"
    by_worker = {s.labels["worker"]: s.value for s in requests.samples}
    assert by_worker == {"0": 1000.0, "1": 0.0}
    lag = {
        s.labels["pid"]: s.value
        for s in families["tornado_run_worker_max_loop_lag_seconds"].samples
    }
    assert lag["4242"] == pytest.approx(0.31)
    websockets = families["tornado_run_worker_open_websockets"]
    assert websockets.type == "gauge"
    assert {s.labels["worker"]: s.value for s in websockets.samples} == {"0": 5.0, "1": 0.0}
    busy = families["tornado_run_pool_busy"].samples
    assert [(s.labels["pool"], s.value) for s in busy] == [("thread", 2.0)]
    restarts = {
        s.labels["reason"]: s.value for s in families["tornado_run_worker_restarts"].samples
    }
    assert restarts == {"max-requests": 3.0, 'odd "reason"\n': 1.0}
    assert families["tornado_run_workers"].samples[0].value == 2
    for name, kind, value in [
        ("worker_open_connections", "gauge", 40.0),
        ("worker_connection_cap_hits", "counter", 7.0),
        ("worker_accept_refused", "counter", 9.0),
    ]:
        family = families[f"tornado_run_{name}"]
        assert family.type == kind
        assert {s.labels["worker"]: s.value for s in family.samples} == {"0": value, "1": 0.0}


def test_metrics_endpoint_answers_get_metrics_and_404_elsewhere() -> None:
    server = metrics.metrics_server("127.0.0.1:0", sample_snapshot)
    port = server.listener.getsockname()[1]
    with serving(server):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200
        assert response.getheader("Content-Type") == metrics.CONTENT_TYPE
        assert any(f.name == "tornado_run_workers" for f in text_string_to_metric_families(body))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 404


def test_metrics_endpoint_drops_clients_that_never_finish_their_request() -> None:
    server = metrics.metrics_server("127.0.0.1:0", sample_snapshot)
    server.client_timeout = 0.3
    port = server.listener.getsockname()[1]
    with serving(server):
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"GET /metr")
        assert slow.recv(100) == b"", "an unfinished request is closed after the timeout"
        huge = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            huge.sendall(b"X" * 20000)
            assert huge.recv(100) == b""
        except ConnectionResetError:
            pass  # closing with our unread bytes in its buffer resets: also a drop
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        assert conn.getresponse().status == 200, "still serving after bad clients"
        slow.close()
        huge.close()


@pytest.mark.parametrize("bad", ["8000", "localhost:", ":9000", "host:99999", "host:x"])
def test_bad_metrics_address_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=f"--metrics '{bad}'"):
        metrics.parse_address(bad)


def test_status_prints_a_row_per_worker_through_the_control_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ctl.sock"
    with serving(control.control_server(path, sample_snapshot)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert status.main(["--control", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"master pid {os.getpid()}, up 2m05s, 2 workers, 4 restarts")
    assert out[1].split()[:3] == ["ID", "PID", "AGE"]
    row0, row1 = out[2].split(), out[3].split()
    assert out[1].split()[3:9] == ["REQUESTS", "IN", "FLIGHT", "CONNS", "CAP", "HITS"]
    assert out[1].split()[9] == "WEBSOCKETS"
    assert row0[:8] == ["0", "4242", "1m01s", "1000", "3", "40", "7", "5"]
    assert row0[8:12] == ["50.0M", "12.5", "310ms", "thread"]
    assert row0[12] == "2/5"
    assert row1[:3] == ["1", "(booting)", "4343"]


def test_status_finds_the_socket_next_to_the_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid_file = tmp_path / "app.pid"
    path = control.control_path(None, str(pid_file), os.getpid())
    assert path == tmp_path / "app.pid.ctl"
    with serving(control.control_server(path, sample_snapshot)):
        assert status.main(["--pid", str(pid_file), "--json"]) == 0
    assert Snapshot.from_json(capsys.readouterr().out) == sample_snapshot()


def test_status_without_arguments_finds_the_only_running_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = control.control_path(None, None, os.getpid())
    assert path.parent == tmp_path / f"tornado-run-{os.getuid()}"
    (path.parent).mkdir(mode=0o700)
    (path.parent / "999999999.ctl").write_text("")  # a dead master's leftover is ignored
    with serving(control.control_server(path, sample_snapshot)):
        assert status.main([]) == 0
    assert "4242" in capsys.readouterr().out


def test_sockets_of_dead_masters_are_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    mine = control.control_path(None, None, os.getpid())
    dead = mine.parent / "999999999.ctl"
    with serving(control.control_server(mine, sample_snapshot)):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(dead))
        stale.close()
        control.remove_stale()
        assert not dead.exists() and mine.exists()


def test_status_without_a_master_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert status.main([]) == 1
    assert status.main(["--control", str(tmp_path / "nothing.sock")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "pass --pid FILE or --control PATH" in err[0]
    assert "nothing.sock" in err[1]


def test_status_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert status.main(["--bogus"]) == 2
    assert status.main(["--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_control_socket_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("data")
    with pytest.raises(FileExistsError, match="not a socket"):
        control.control_server(path, sample_snapshot)
    assert path.read_text() == "data"


def test_stale_control_socket_is_replaced_and_removed_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    with serving(control.control_server(path, sample_snapshot)):
        assert control.query(path).master_pid == os.getpid()
    control.remove(path)
    assert not path.exists()


def test_worker_figures_read_loop_and_pool_providers() -> None:
    figures = worker_figures(
        {"loop": {"max_lag_ms": 12.5, "blocked_episodes": 1}, "pools": {"p": {"busy": 1}}}
    )
    assert figures == {"max_lag_ms": 12.5, "blocked_episodes": 1, "pools": {"p": {"busy": 1}}}
    assert worker_figures({}) == {"max_lag_ms": 0.0, "blocked_episodes": 0, "pools": {}}


def test_status_ages_read_naturally() -> None:
    assert [status.format_age(s) for s in (5, 65, 3700, 90000)] == ["5s", "1m05s", "1h01m", "1d01h"]
