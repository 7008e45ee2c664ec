"""Connection floods against a real `tornado-run`: a worker at its open-files limit backs off
instead of spinning and keeps serving; the soft limit is raised to the hard one; the
--max-connections cap holds new connections in the listen queue; --max-header-size."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from runner_support import Server, run_cli, wait_until
from tornado_run.runner.worker.accepting import Acceptor

pytestmark = pytest.mark.timeout(90)

GET = b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n"


def open_files_limit(soft: int, hard: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's RLIMIT_NOFILE."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def proc_limit(pid: int) -> tuple[int, int]:
    """(soft, hard) open files of `pid`, read from /proc/PID/limits."""
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1)), int(match.group(2))


@contextlib.contextmanager
def idle_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send nothing (the kernel completes them even if not
    accepted); all closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def ask(sock: socket.socket) -> bytes:
    """One keep-alive request on `sock`; the whole response (Tornado sends Content-Length)."""
    sock.sendall(GET)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head.split(b"\r\n", 1)[0]


def held_connections(worker: psutil.Process, port: int) -> int:
    """Established connections the worker holds on the server's port."""
    return sum(
        1
        for conn in worker.net_connections(kind="tcp")
        if conn.status == psutil.CONN_ESTABLISHED and conn.laddr and conn.laddr.port == port
    )


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def status_json(control: Path) -> dict[str, object]:
    result = run_cli("status", "--control", str(control), "--json")
    assert result.returncode == 0, result.stderr
    decoded: dict[str, object] = json.loads(result.stdout)
    return decoded


HTTP_KINDS = pytest.mark.parametrize("http", ["fast", "tornado"])
"""Both HTTP servers accept through the same Acceptor; the flood behaviours run on each."""


@HTTP_KINDS
def test_at_the_open_files_limit_the_worker_backs_off_and_keeps_serving(
    launch: Callable[..., Server], http: str
) -> None:
    server = launch(
        "hello:application", "--workers", "1", "--http", http,
        preexec_fn=open_files_limit(150, 150),
    )  # fmt: skip
    assert server.port is not None
    (worker,) = server.workers()
    log = server.log()
    assert "--max-connections 1000 needs about 1064" in log, "the low hard limit is warned"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as kept:
        assert ask(kept).startswith(b"HTTP/1.1 200")
        with idle_clients(server.port, 300):
            server.wait_for_log(r"Too many open files \(EMFILE\)")
            lines_before = len(server.log().splitlines())
            cpu_before = cpu_seconds(worker)
            for _ in range(10):
                assert ask(kept).startswith(b"HTTP/1.1 200"), "established clients are served"
                time.sleep(0.2)
            cpu_used = cpu_seconds(worker) - cpu_before
            assert cpu_used < 0.5, f"the worker spent {cpu_used:.2f} CPU-s in 2 s at the limit"
            new_lines = server.log().splitlines()[lines_before:]
            assert len(new_lines) < 5, new_lines
        assert ask(kept).startswith(b"HTTP/1.1 200")
    reply = server.get("/pid", timeout=10)
    assert reply.status == 200, "new clients are served once the flood has left"
    # The episode ends after a second of accepting without a refusal.
    server.wait_for_log(r"accepting again after [\d.]+s; \d+ attempts refused \(EMFILE\)")
    log = server.log()
    assert len(re.findall("EMFILE", log)) == 2, "one line when it starts, one when it ends"
    assert "Traceback" not in log
    assert server.stop() == 0


def test_the_soft_open_files_limit_is_raised_to_the_hard_limit_in_master_and_workers(
    launch: Callable[..., Server],
) -> None:
    server = launch(
        "hello:application",
        "--workers",
        "2",
        "--log-level",
        "debug",
        preexec_fn=open_files_limit(256, 4096),
    )
    assert proc_limit(server.pid) == (4096, 4096)
    workers = server.workers()
    assert len(workers) == 2
    assert all(proc_limit(w.pid) == (4096, 4096) for w in workers)
    log = server.log()
    assert "open files: soft limit 4096 (hard 4096)" in log
    assert "needs about" not in log, "4096 is enough for --max-connections 1000"
    assert server.stop() == 0


@HTTP_KINDS
def test_past_max_connections_the_worker_stops_accepting_and_serves_the_queue_later(
    launch: Callable[..., Server], tmp_path: Path, http: str
) -> None:
    control = tmp_path / "ctl.sock"
    server = launch(
        "hello:application", "--workers", "1", "--max-connections", "50",
        "--control", str(control), "--http", http,
    )  # fmt: skip
    assert server.port is not None
    (worker,) = server.workers()
    with idle_clients(server.port, 200) as clients:
        wait_until(lambda: held_connections(worker, server.port) >= 50, 10, "50 connections")
        most = 0
        for _ in range(20):
            most = max(most, held_connections(worker, server.port))
            time.sleep(0.05)
        assert 50 <= most <= 52, f"the worker held {most} connections with a cap of 50"
        status = status_json(control)
        (row,) = status["workers"]  # type: ignore[misc]
        assert row["connections"] == 50 and row["cap_hits"] >= 1, row
        for sock in clients:  # every client asks once; the server closes after each answer
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answered = 0
        for sock in clients:
            sock.settimeout(15)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                most = (
                    max(most, held_connections(worker, server.port)) if answered % 20 == 0 else most
                )
            answered += data.startswith(b"HTTP/1.1 200")
        assert answered == 200, "connections held in the listen queue were served in turn"
        assert most <= 52

    def cap_hits() -> int:  # the worker publishes its counters every half second
        (row,) = status_json(control)["workers"]  # type: ignore[misc]
        return int(row["cap_hits"])

    wait_until(lambda: cap_hits() >= 2, 5, "the cap hit again while the queue was served")
    assert server.stop() == 0


def big_header_request(port: int, size: int) -> bytes:
    """Send a request with one header of `size` bytes; return the status line (or b'')."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close while we still send
            sock.sendall(
                b"GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: "
                + b"a" * size
                + b"\r\n\r\n"
            )
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return data.split(b"\r\n", 1)[0]


def test_a_header_block_over_max_header_size_gets_431_and_a_larger_setting_passes_it(
    launch: Callable[..., Server],
) -> None:
    default = launch("hello:application", "--workers", "1")
    assert default.port is not None
    assert (
        big_header_request(default.port, 70 << 10)
        == b"HTTP/1.1 431 Request Header Fields Too Large"
    )
    assert default.get("/pid").status == 200, "the worker still serves"
    larger = launch("hello:application", "--workers", "1", "--max-header-size", "128K")
    assert larger.port is not None
    assert big_header_request(larger.port, 70 << 10) == b"HTTP/1.1 200 OK"
    assert default.stop() == 0 and larger.stop() == 0


class Collecting:
    """The smallest sink: keeps what it is given, as a second server kind would serve it."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def accepted(self, sock: socket.socket, address: object) -> None:
        self.socks.append(sock)

    @property
    def connection_count(self) -> int:
        return sum(1 for sock in self.socks if sock.fileno() >= 0)

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close()


async def until(done: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached in 3 s: {what}")


def test_an_acceptor_caps_any_sink_and_resumes_when_its_count_drops() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        sink = Collecting()
        acceptor = Acceptor(sink, [listener], max_connections=3)
        acceptor.start()
        clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
        try:
            await until(lambda: sink.connection_count == 3, "3 accepted")
            await asyncio.sleep(0.2)
            assert sink.connection_count == 3 and acceptor.cap_hits == 1
            sink.socks[0].close()  # this sink never calls released(): the acceptor polls
            await until(lambda: len(sink.socks) == 4, "a fourth accepted after a close")
            assert sink.connection_count == 3 and acceptor.cap_hits == 2
            acceptor.stop()
            assert acceptor.take_queued() == 1, "the drain takes the queue, whatever the cap"
            acceptor.close()
            assert listener.fileno() == -1
        finally:
            sink.close_all()
            for client in clients:
                client.close()
            listener.close()

    asyncio.run(main())


def test_released_resumes_a_capped_acceptor_at_once() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        sink = Collecting()
        acceptor = Acceptor(sink, [listener], max_connections=1)
        acceptor.start()
        clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        try:
            await until(lambda: acceptor.cap_hits == 1, "the cap")
            sink.socks[0].close()
            acceptor.released()
            await until(lambda: len(sink.socks) == 2, "the second accepted")
        finally:
            acceptor.close()
            sink.close_all()
            for client in clients:
                client.close()

    asyncio.run(main())


def test_a_client_trickling_its_headers_is_cut_off_at_the_idle_timeout(
    launch: Callable[..., Server],
) -> None:
    server = launch("hello:application", "--workers", "1", "--idle-timeout", "1")
    assert server.port is not None
    request = b"GET /pid HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    closed_after = None
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for sent in range(len(request)):  # one byte every 0.1 s: 10 s for the whole request
            try:
                sock.sendall(request[sent : sent + 1])
            except OSError:
                closed_after = sent
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable and not sock.recv(4096):
                closed_after = sent
                break
    assert closed_after is not None, "the trickling client was never cut off"
    assert closed_after < len(request) - 1
    assert server.get("/pid").status == 200
    assert server.stop() == 0


class Lagging(Collecting):
    """A sink that counts a connection a few loop turns after it is handed over, as one
    that sets connections up in a task does (loop.connect_accepted_socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.counted: list[socket.socket] = []

    def accepted(self, sock: socket.socket, address: object) -> None:
        super().accepted(sock, address)
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self.counted.append, sock)

    @property
    def connection_count(self) -> int:
        return sum(1 for sock in self.counted if sock.fileno() >= 0)


def test_an_acceptor_holds_the_cap_for_a_sink_that_counts_late() -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        sink = Lagging()
        acceptor = Acceptor(sink, [listener], max_connections=10)
        # all queued at once: the next readable event comes before the sink has counted
        clients = [socket.create_connection(listener.getsockname()) for _ in range(60)]
        acceptor.start()
        try:
            await until(lambda: sink.connection_count >= 10, "10 counted")
            await asyncio.sleep(0.3)
            assert len(sink.socks) == 10, f"{len(sink.socks)} accepted with a cap of 10"
        finally:
            acceptor.close()
            sink.close_all()
            for client in clients:
                client.close()

    asyncio.run(main())


def test_an_acceptor_takes_sockets_added_while_it_runs() -> None:
    async def main() -> None:
        first = socket.create_server(("127.0.0.1", 0))
        second = socket.create_server(("127.0.0.1", 0))
        sink = Collecting()
        acceptor = Acceptor(sink, [first], max_connections=10)
        acceptor.start()
        acceptor.add([second])
        clients = [socket.create_connection(s.getsockname()) for s in (first, second)]
        try:
            await until(lambda: sink.connection_count == 2, "one from each socket")
        finally:
            acceptor.close()
            sink.close_all()
            for client in clients:
                client.close()
        assert first.fileno() == second.fileno() == -1

    asyncio.run(main())
