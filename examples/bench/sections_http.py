"""The HTTP/1.1 layer: `--http fast` (httptools on asyncio transports) against `--http
tornado` (Tornado's HTTPServer), raw `fork_processes` and `gunicorn -k tornado`, on hello
world, a JSON answer and a 4 KiB POST."""

from __future__ import annotations

from collections.abc import Callable

from .harness import Server, free_port, running, warm_up
from .loadgen import closed_loop, load_tool
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import CONNECTIONS, gunicorn, raw_fork, tornado_run

WORKLOADS: list[tuple[str, str, int | None]] = [
    ("hello world", "/", None),
    ("JSON", "/json", None),
    ("4 KiB POST", "/echo", 4096),
]
"""Name, path, POST body size (None: GET)."""


def _measure(
    make: Callable[[int], Server], path: str, post_size: int | None, settings: Settings
) -> Values:
    load_tool()
    port = free_port()
    with running(make(port)) as server:
        warm_up(server, "/", settings.warmup)
        cpu_before = server.cpu_seconds()
        result = closed_loop(
            f"http://127.0.0.1:{port}{path}", CONNECTIONS, settings.seconds, post_size=post_size
        )
        cpu = server.cpu_seconds() - cpu_before
        pss = server.pss_mib()
    return {
        "req_s": result.ok_per_second,
        "req_per_cpu_s": result.requests / cpu if cpu > 0 else None,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": float(result.errors + result.non_2xx),
        "pss_mib": pss,
    }


def _servers() -> list[tuple[str, Callable[[int], Server]]]:
    return [
        ("raw bind_sockets + fork_processes(2)", raw_fork),
        (
            "tornado-run --workers 2 --http tornado",
            lambda port: tornado_run(port, "--http", "tornado"),
        ),
        ("tornado-run --workers 2 --http fast", lambda port: tornado_run(port, "--http", "fast")),
        ("gunicorn -k tornado -w 2", gunicorn),
    ]


def http_sections(settings: Settings, log: Log) -> list[Section]:
    """One table per workload, rows interleaved over the rounds."""
    sections = []
    for title, path, post_size in WORKLOADS:
        servers = _servers()
        variants = [
            variant(name, _measure, make, path, post_size, settings) for name, make in servers
        ]
        sections.append(
            Section(
                f"http-{path.strip('/') or 'hello'}",
                f"HTTP layer, {title}: wrk -t2 -c{CONNECTIONS}, 2 workers each",
                [
                    Column("req_s", "req/s"),
                    Column("req_per_cpu_s", "req per server CPU-s"),
                    Column("p50_ms", "p50 ms", 2),
                    Column("p99_ms", "p99 ms", 2),
                    Column("errors", "errors"),
                    Column("pss_mib", "PSS MiB", 1),
                ],
                interleaved(settings.rounds, variants, log),
                ratio_key="req_per_cpu_s",
                baseline=servers[0][0],
                notes=[
                    "req per server CPU-second is the figure to compare (the socket "
                    "spread decides req/s)"
                ],
            )
        )
    return sections
