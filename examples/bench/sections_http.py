"""The HTTP path: the same unchanged Tornado app served by `--http fast` (httptools) and by
`--http tornado` (Tornado's HTTPServer), against raw `fork_processes` and `gunicorn -k tornado`,
for a hello world, a JSON handler and a 4 KiB POST."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .harness import Server, Skip, free_port, help_text, running, tornado_run_command, warm_up
from .loadgen import closed_loop, load_tool
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import CONNECTIONS, gunicorn, raw_fork, tornado_run

POST_SCRIPT = Path(__file__).resolve().parent / "post4k.lua"
ENDPOINTS: list[tuple[str, str, str, Path | None]] = [
    ("http_hello", "Hello world", "/", None),
    ("http_json", "JSON handler", "/json", None),
    ("http_post", "4 KiB POST", "/upload", POST_SCRIPT),
]
"""(section key, title, path, wrk script) for each row group."""

Maker = Callable[[int], Server]


def _http(kind: str) -> Maker:
    def make(port: int) -> Server:
        if "--http" not in help_text(tornado_run_command()):
            raise Skip("this tornado-run has no --http option")
        return tornado_run(port, "--http", kind)

    return make


def _measure(make: Maker, path: str, script: Path | None, settings: Settings) -> Values:
    load_tool()
    port = free_port()
    with running(make(port)) as server:
        warm_up(server, "/", settings.warmup)
        cpu_before = server.cpu_seconds()
        url = f"http://127.0.0.1:{port}{path}"
        result = closed_loop(url, CONNECTIONS, settings.seconds, script=script)
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


def http_sections(settings: Settings, log: Log) -> list[Section]:
    """One table per endpoint; every variant serves the same examples/bench/hello.py app."""
    makers: list[tuple[str, Maker]] = [
        ("raw bind_sockets + fork_processes(2)", raw_fork),
        ("tornado-run --workers 2 --http tornado", _http("tornado")),
        ("tornado-run --workers 2 --http fast", _http("fast")),
        ("gunicorn -k tornado -w 2", gunicorn),
    ]
    sections = []
    for key, title, path, script in ENDPOINTS:
        log(f" {title} ({path})")
        variants = [variant(n, _measure, m, path, script, settings) for n, m in makers]
        sections.append(
            Section(
                key,
                f"{title} ({'POST' if script else 'GET'} {path}), wrk -t2 -c{CONNECTIONS}, "
                "2 workers each",
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
                baseline=makers[0][0],
                notes=["both tornado-run rows use the default loop (uvloop where installed)"],
            )
        )
    return sections
