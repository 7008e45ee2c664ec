"""Prometheus text exposition (format 0.0.4) of the master's snapshot, served from its loop.

`render` turns a `Snapshot` into text; `metrics_server` binds `--metrics HOST:PORT` and returns
a `PollServer` that answers `GET /metrics` (anything else: 404). prometheus_client is not used
here: its registry and HTTP server are built around threads and process-global state, while the
master may own neither before it forks; the format itself is a few lines.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from .pollserver import PollServer
from .snapshot import Snapshot, WorkerSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]

_WORKER_METRICS: list[tuple[str, str, str, Callable[[WorkerSnapshot], float]]] = [
    (
        "requests_total",
        "counter",
        "Requests served by the worker since it started.",
        lambda w: w.requests,
    ),
    ("in_flight_requests", "gauge", "Requests the worker is handling now.", lambda w: w.in_flight),
    (
        "open_connections",
        "gauge",
        "Client connections the worker holds open.",
        lambda w: w.connections,
    ),
    (
        "connection_cap_hits_total",
        "counter",
        "Times the worker stopped accepting because it held --max-connections.",
        lambda w: w.cap_hits,
    ),
    (
        "accept_refused_total",
        "counter",
        "accept() attempts that failed for lack of file descriptors or memory.",
        lambda w: w.accept_refused,
    ),
    (
        "open_websockets",
        "gauge",
        "WebSocket connections open in the worker now.",
        lambda w: w.websockets,
    ),
    ("resident_memory_bytes", "gauge", "Resident set size of the worker process.", lambda w: w.rss),
    (
        "cpu_percent",
        "gauge",
        "CPU use of the worker since the previous sample, in percent.",
        lambda w: w.cpu_percent,
    ),
    ("age_seconds", "gauge", "Seconds since the worker was started.", lambda w: w.age),
    (
        "max_loop_lag_seconds",
        "gauge",
        "Largest event loop lag seen by the worker.",
        lambda w: w.max_lag_ms / 1000,
    ),
    (
        "blocked_loop_episodes_total",
        "counter",
        "Episodes where the event loop was blocked longer than --block-warn.",
        lambda w: w.blocked_episodes,
    ),
]

_POOL_FIGURES = ("busy", "queued", "size", "completed", "failed", "timed_out", "crashed", "shed")
_POOL_COUNTERS = {"completed", "failed", "timed_out", "crashed", "shed"}


def escape_label(value: str) -> str:
    """Escape a label value as the text format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if value != value:
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    full = f"tornado_run_{name}"
    lines = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(
            f"{full}{{{label_text}}} {_format_value(value)}"
            if labels
            else f"{full} {_format_value(value)}"
        )
    return lines


def render(snapshot: Snapshot) -> str:
    """The snapshot as Prometheus text: one series per worker (labels `worker`, `pid`), pool
    figures per worker and pool, master-wide gauges, restart counters by reason, and the CPU
    tier's pools once (labels `pool`)."""
    lines: list[str] = []
    lines += _family(
        "workers", "gauge", "Workers the master supervises.", [({}, len(snapshot.workers))]
    )
    lines += _family(
        "master_uptime_seconds",
        "gauge",
        "Seconds since the master started.",
        [({}, snapshot.uptime)],
    )
    restarts = [({"reason": reason}, count) for reason, count in sorted(snapshot.restarts.items())]
    lines += _family("worker_restarts_total", "counter", "Workers replaced, by reason.", restarts)
    for name, kind, help_text, get in _WORKER_METRICS:
        samples = [(_worker_labels(w), float(get(w))) for w in snapshot.workers]
        lines += _family(f"worker_{name}", kind, help_text, samples)
    for figure in _POOL_FIGURES:
        samples = []
        for w in snapshot.workers:
            for pool, stats in sorted(w.pools.items()):
                if isinstance(stats.get(figure), int | float):
                    samples.append(({**_worker_labels(w), "pool": pool}, float(stats[figure])))
        kind = "counter" if figure in _POOL_COUNTERS else "gauge"
        suffix = "_total" if kind == "counter" else ""
        lines += _family(f"pool_{figure}{suffix}", kind, f"Pool {figure} per worker.", samples)
    return "\n".join(lines + _tier_lines(snapshot.tier)) + "\n"


def _tier_lines(tier: dict[str, Any]) -> list[str]:
    """The CPU tier's figures, once for the host: per pool (label `pool`) and its restarts."""
    if not tier:
        return []
    lines = _family(
        "cpu_tier_restarts_total",
        "counter",
        "Times the CPU tier's broker died and was started again.",
        [({}, float(tier.get("restarts", 0)))],
    )
    pools = tier.get("pools", {})
    for figure in _POOL_FIGURES:
        kind = "counter" if figure in _POOL_COUNTERS else "gauge"
        suffix = "_total" if kind == "counter" else ""
        samples = [
            ({"pool": name}, float(stats[figure]))
            for name, stats in sorted(pools.items())
            if isinstance(stats, dict) and isinstance(stats.get(figure), int | float)
        ]
        lines += _family(
            f"cpu_tier_pool_{figure}{suffix}", kind, f"CPU tier pool {figure}.", samples
        )
    return lines


def _worker_labels(worker: WorkerSnapshot) -> dict[str, str]:
    return {"worker": str(worker.worker_id), "pid": str(worker.pid)}


def http_responder(snapshot: Callable[[], Snapshot]) -> Callable[[bytes], bytes | None]:
    """Answer one HTTP/1.x request: `GET /metrics` gets the text, other paths 404."""

    def respond(request: bytes) -> bytes | None:
        if b"\r\n\r\n" not in request and b"\n\n" not in request:
            return None
        parts = request.split(b"\r\n", 1)[0].split()
        method, path = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        if method not in (b"GET", b"HEAD") or path.split(b"?", 1)[0] != b"/metrics":
            return _http(404, "Not Found", b"not found: try GET /metrics\n", "text/plain")
        body = render(snapshot()).encode()
        return _http(200, "OK", body, CONTENT_TYPE, head=method == b"HEAD")

    return respond


def _http(status: int, reason: str, body: bytes, ctype: str, head: bool = False) -> bytes:
    header = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return header.encode() + (b"" if head else body)


def parse_address(value: str) -> tuple[str, int]:
    """Parse `--metrics HOST:PORT` (`[v6]:PORT` for IPv6); raises ValueError naming the value."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--metrics {value!r}: expected HOST:PORT with a port from 0 to 65535")
    return host, int(port_text)


def metrics_server(address: str, snapshot: Callable[[], Snapshot]) -> PollServer:
    """Bind `address` (HOST:PORT) and return the server; raises ValueError or OSError."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return PollServer(sock, http_responder(snapshot))
