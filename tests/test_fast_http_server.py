"""`--http fast` in real tornado-run processes: it serves, it is chosen by the option, the
config file and the environment, it drains on TERM and reloads on HUP with a client loop
seeing no failure, and its request counters reach status and metrics."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from runner_support import Load, Server, http_get, run_cli, wait_until

pytestmark = pytest.mark.timeout(90)


def _server_kind(server: Server) -> str:
    """Which server answered: the module of the request's connection object."""
    status, body = server.get_json("/connection")
    assert status == 200
    module = body["connection"]
    assert module.startswith(("tornado.http1connection", "tornado_run.runner.worker.fast")), module
    return "fast" if module.startswith("tornado_run") else "tornado"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param((), {}, "fast", id="default-auto-with-httptools"),
        pytest.param(("--http", "fast"), {}, "fast", id="option"),
        pytest.param((), {"TORNADO_RUN_HTTP": "fast"}, "fast", id="environment"),
        pytest.param(("--http", "auto"), {}, "fast", id="auto-with-httptools"),
        pytest.param(("--http", "tornado"), {"TORNADO_RUN_HTTP": "fast"}, "tornado", id="cli-wins"),
    ],
)
def test_http_option_chooses_the_server(
    launch: Callable[..., Server], args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    server = launch("hello:application", *args, env=env)
    status, body = server.get_json("/ip")
    assert status == 200 and body == {"remote_ip": "127.0.0.1", "protocol": "http"}
    assert _server_kind(server) == expected
    assert server.stop() == 0


def test_http_in_the_config_file(launch: Callable[..., Server], tmp_path: Path) -> None:
    config = tmp_path / "tornado-run.toml"
    config.write_text('[server]\nhttp = "fast"\n')
    server = launch("hello:application", "--config", str(config))
    assert _server_kind(server) == "fast"
    assert server.stop() == 0


def test_bad_http_value_is_one_line_and_exit_2() -> None:
    result = run_cli("hello:application", "--http", "h2")
    assert result.returncode == 2
    assert "--http 'h2'" in result.stderr and "auto, fast, tornado" in result.stderr
    assert "Traceback" not in result.stderr


def test_forwarded_headers_from_a_trusted_peer(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--http", "fast", "--proxy-headers")
    reply = http_get(server.port, "/ip", headers={"X-Forwarded-For": "203.0.113.9"})
    assert reply.json() == {"remote_ip": "203.0.113.9", "protocol": "http"}
    assert server.stop() == 0


def test_term_answers_every_request_in_flight_and_half_closes_idle_connections(
    launch: Callable[..., Server],
) -> None:
    server = launch("hello:application", "--http", "fast", "--graceful-timeout", "20")
    assert server.port is not None
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    idle.request("GET", "/pid")
    assert idle.getresponse().read()
    replies: list[tuple[int, str | None]] = []

    def slow_request() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        conn.request("GET", "/sleep?s=1")
        reply = conn.getresponse()
        reply.read()
        replies.append((reply.status, reply.getheader("Connection")))
        conn.close()

    threads = [threading.Thread(target=slow_request) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: _client_connections(server) == 5, 10, "4 requests in flight")
    server.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    assert replies == [(200, "close")] * 4
    assert idle.sock is not None
    assert idle.sock.recv(1) == b""  # FIN: the client knows to reconnect
    idle.close()
    assert server.wait(30) == 0


def _client_connections(server: Server) -> int:
    """Established client connections of the only worker."""
    (worker,) = server.workers()
    return sum(1 for c in worker.net_connections("tcp") if c.status == "ESTABLISHED")


def test_hup_reloads_under_load_without_a_failed_request(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--http", "fast", "--workers", "2")
    assert server.port is not None
    with Load(server.port, fresh=1, kept=2, seconds=60) as load:
        load.wait_for(30)
        for round_number in (1, 2):
            before = server.worker_pids()
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Reload complete", timeout=30, count=round_number)
            wait_until(lambda old=before: not server.worker_pids() & old, 30, "old workers gone")
            load.wait_for(30)
    assert load.failures == []
    assert server.stop() == 0


def test_request_counts_reach_metrics(launch: Callable[..., Server]) -> None:
    server = launch("hello:application", "--http", "fast", "--metrics", "127.0.0.1:0")
    for _ in range(7):
        assert server.get("/pid").status == 200
    log = server.wait_for_log(r"metrics on")
    metrics_port = int(log.split("metrics on http://127.0.0.1:")[1].split("/")[0])

    def counted() -> float:
        reply = http_get(metrics_port, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
        return sum(s.value for s in families["tornado_run_worker_requests"].samples)

    wait_until(lambda: counted() >= 7, 10, "request counters")
    assert counted() == 7
    assert server.stop() == 0


def test_max_requests_recycles_a_fast_worker_without_a_failed_request(
    launch: Callable[..., Server],
) -> None:
    server = launch("hello:application", "--http", "fast", "--max-requests", "40")
    assert server.port is not None
    first = server.worker_pids()
    with Load(server.port, fresh=1, kept=1, seconds=40) as load:
        wait_until(lambda: server.worker_pids() and not server.worker_pids() & first, 30,
                   "the worker to be recycled")  # fmt: skip
        load.wait_for(20)
    assert load.failures == []
    assert server.stop() == 0


def test_fast_server_on_a_unix_socket(launch: Callable[..., Server], tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    server = launch("hello:application", "--http", "fast", bind=f"unix:{path}")
    reply = server.get("/ip")
    assert reply.status == 200 and reply.json() == {"remote_ip": "0.0.0.0", "protocol": "http"}
    assert server.stop() == 0


@pytest.mark.parametrize("kind", ["fast", "tornado"])
def test_an_upload_to_a_lagging_handler_pauses_reading_instead_of_filling_memory(
    launch: Callable[..., Server], kind: str
) -> None:
    """The handler awaits 1 ms per 64 KiB piece: far slower than loopback, so without flow
    control the 100 MiB body would pile up in the worker."""
    size = 100 << 20
    server = launch("upload_app:application", "--http", kind, "--max-body-size", str(size))
    assert server.port is not None
    (worker,) = server.workers()
    before = worker.memory_info().rss
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, worker.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        piece = b"x" * (1 << 20)
        pieces = (piece for _ in range(size // len(piece)))
        conn.request("PUT", "/slow-upload?sleep=0.001", pieces, {"Content-Length": str(size)})
        reply = conn.getresponse()
        body = reply.read()
        conn.close()
    finally:
        done.set()
        watcher.join()
    assert (reply.status, body) == (200, b'{"received": %d}' % size)
    assert peak - before < 50 << 20, f"worker grew by {(peak - before) >> 20} MiB"
    assert server.stop() == 0


@pytest.mark.parametrize("kind", ["fast", "tornado"])
def test_idle_keep_alive_connections_hold_nothing_of_their_last_upload(
    launch: Callable[..., Server], kind: str
) -> None:
    """40 connections each upload 1.5 MiB and stay open: what a connection keeps of the
    bytes it received (for a detach) is dropped once it is idle."""
    server = launch("upload_app:application", "--http", kind)
    assert server.port is not None
    (worker,) = server.workers()
    before = worker.memory_info().rss
    size = 3 << 19
    head = b"PUT /slow-upload?sleep=0 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size
    with contextlib.ExitStack() as stack:
        for _ in range(40):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port)))
            sock.sendall(head + b"x" * size)
            reply = stack.enter_context(sock.makefile("rb"))
            assert reply.readline().startswith(b"HTTP/1.1 200")
            while reply.readline() != b"\r\n":
                pass
        grown = worker.memory_info().rss - before
    assert grown < 30 << 20, f"worker grew by {grown >> 20} MiB"
    assert server.stop() == 0
