"""Load generators: `wrk` (preferred) or `ab` for closed-loop throughput, and small Python
clients for what they cannot do: latency probes beside a load, an open-loop arrival rate
(to overload a server on purpose), and counting which worker holds each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .harness import Skip, executable

INSTALL_HINT = (
    "install wrk (Debian/Ubuntu: apt-get install wrk) or ab (apt-get install apache2-utils)"
)


@dataclass
class LoadResult:
    """What one closed-loop run measured."""

    tool: str
    requests: int
    seconds: float
    non_2xx: int = 0
    errors: int = 0  # connect/read/write errors and timeouts
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def ok_per_second(self) -> float:
        return max(0, self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def load_tool() -> str:
    """`wrk` when installed, else `ab`; Skip with install instructions when neither is."""
    for tool in ("wrk", "ab"):
        if executable(tool):
            return tool
    raise Skip(f"no load tool found: {INSTALL_HINT}")


def closed_loop(
    url: str,
    connections: int,
    seconds: float,
    timeout: float = 10.0,
    tool: str | None = None,
    post_size: int | None = None,
) -> LoadResult:
    """Keep `connections` keep-alive connections busy on `url` for `seconds`, with `tool`
    ("wrk" or "ab"; default: whichever is installed, wrk first). With `post_size`, every
    request is a POST of a body of that many bytes (wrk only)."""
    tool = tool or load_tool()
    if tool == "wrk":
        return _run_wrk(url, connections, seconds, timeout, post_size)
    if post_size is not None:
        raise Skip("POST rows need wrk")
    return _run_ab(url, connections, seconds, timeout)


def _run(command: list[str], seconds: float) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise Skip(f"{command[0]} did not finish within {seconds + 30:.0f} s") from err
    if done.returncode != 0 and "requests in" not in done.stdout:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise Skip(f"{command[0]} failed: {last[-1] if last else done.returncode}")
    return done.stdout


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def _run_wrk(
    url: str, connections: int, seconds: float, timeout: float, post_size: int | None = None
) -> LoadResult:
    threads = max(1, min(2, connections))
    whole = max(1, round(seconds))  # wrk takes whole seconds only
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{whole}s"]
    command += [f"--timeout={timeout:g}s", "--latency", url]
    if post_size is None:
        return parse_wrk(_run(command, seconds))
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = string.rep("x", {post_size})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
        return parse_wrk(_run([*command, "-s", str(script)], seconds))


def parse_wrk(out: str) -> LoadResult:
    """Read wrk's text report (with --latency)."""
    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not summary:
        raise Skip(f"could not read wrk's output: {out.strip()[:120]!r}")
    result = LoadResult("wrk", int(summary[1]), _duration_ms(summary[2] + summary[3]) / 1000)
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result.non_2xx = int(match[1])
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        result.errors = sum(int(n) for n in match.groups())
    if match := re.search(r"^\s+50%\s+(\S+)", out, re.M):
        result.p50_ms = _duration_ms(match[1])
    if match := re.search(r"^\s+99%\s+(\S+)", out, re.M):
        result.p99_ms = _duration_ms(match[1])
    return result


def _run_ab(url: str, connections: int, seconds: float, timeout: float) -> LoadResult:
    whole = max(1, round(seconds))  # ab takes whole seconds only
    command = ["ab", "-q", "-k", "-r", "-c", str(connections), "-t", str(whole)]
    command += ["-n", "50000000", "-s", f"{max(1, round(timeout))}", url]
    return parse_ab(_run(command, seconds))


def parse_ab(out: str) -> LoadResult:
    """Read ab's text report."""
    done = re.search(r"Complete requests:\s+(\d+)", out)
    taken = re.search(r"Time taken for tests:\s+([\d.]+) seconds", out)
    if not done or not taken:
        raise Skip(f"could not read ab's output: {out.strip()[:120]!r}")
    result = LoadResult("ab", int(done[1]), float(taken[1]))
    if match := re.search(r"Non-2xx responses:\s+(\d+)", out):
        result.non_2xx = int(match[1])
    if match := re.search(r"Failed requests:\s+(\d+)", out):
        result.errors = int(match[1])
    if match := re.search(r"^\s+50%\s+(\d+)", out, re.M):
        result.p50_ms = float(match[1])
    if match := re.search(r"^\s+99%\s+(\d+)", out, re.M):
        result.p99_ms = float(match[1])
    return result


def percentile(values: list[float], pct: float) -> float | None:
    """The `pct` percentile (nearest rank) of `values`, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Probe(threading.Thread):
    """GETs `path` on a fresh connection every `interval` seconds until stopped, recording
    latencies (ms) of answered requests and the count of failures."""

    def __init__(self, port: int, path: str, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.interval = port, path, interval
        self.latencies: list[float] = []
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", self.path)
                status = conn.getresponse().status
                elapsed = (time.perf_counter() - started) * 1000
                if status == 200:
                    self.latencies.append(elapsed)
                else:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
            finally:
                conn.close()
            self._stop_event.wait(self.interval)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)


@dataclass
class OpenLoopResult:
    offered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer within the timeout
    ok_latencies: list[float] = field(default_factory=list)


async def _one_request(port: int, path: str, timeout: float, result: OpenLoopResult) -> None:
    started = time.perf_counter()
    status = 0
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
            status = int(line.split()[1]) if line.startswith(b"HTTP/") else 0
            await reader.read()
    except (OSError, TimeoutError, ValueError, IndexError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    result.statuses[status] += 1
    if status == 200:
        result.ok_latencies.append((time.perf_counter() - started) * 1000)


async def _open_loop(
    port: int, path: str, rate: float, seconds: float, timeout: float
) -> OpenLoopResult:
    result = OpenLoopResult()
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) + 1
        while result.offered < due:
            result.offered += 1
            task = asyncio.create_task(_one_request(port, path, timeout, result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(min(0.005, 1 / rate))
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)
    return result


def open_loop(
    port: int, path: str, rate: float, seconds: float, timeout: float = 10.0
) -> OpenLoopResult:
    """Send GETs at `rate` per second for `seconds`, whatever the server's pace (new
    connection each), and wait up to `timeout` for each answer."""
    return asyncio.run(_open_loop(port, path, rate, seconds, timeout))


def connection_spread(port: int, path: str, connections: int = 64) -> Counter[str]:
    """Open `connections` keep-alive connections at once, send one request on each, and count
    answers per body (the app answers its pid). Unanswered connections count under "none"."""
    socks: list[socket.socket] = []
    spread: Counter[str] = Counter()
    try:
        for _ in range(connections):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        for sock in socks:
            sock.sendall(request)
        for sock in socks:
            spread[_read_body(sock)] += 1
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    return spread


def _read_body(sock: socket.socket) -> str:
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    _head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace").strip() or "none"


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.I)
    return bool(match) and len(body) >= int(match[1])  # type: ignore[index]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
