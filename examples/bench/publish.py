"""One benchmark run is the source of every published figure: `published.json` (a run's
results.json) draws the chart and writes the generated parts of the README and of
docs/benchmarks.md, each between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`.

    python -m examples.bench.publish examples/bench/results/results.json   # publish a run
    python -m examples.bench.publish --check   # exit 1 naming each part that differs

`tests/test_bench_published.py` runs the check, so no figure in the README or the docs can
drift from the published file.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from . import report
from .plan import Section

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "examples" / "bench" / "published.json"
CHART = ROOT / "examples" / "bench" / "chart.png"  # docs/assets/chart.png links to it
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "benchmarks.md"
COMMAND = "python -m examples.bench.publish examples/bench/results/results.json"

RAW = "raw bind_sockets + fork_processes(2)"
FAST, TORNADO = "tornado-run --workers 2 --http fast", "tornado-run --workers 2 --http tornado"
GUNICORN = "gunicorn -k tornado -w 2"
PROCESS_1, PROCESS_AUTO = (
    "tornado-run -w 1, @unblock(pool='process')",
    "tornado-run -w auto, @unblock(pool='process')",
)
STDLIB = "stdlib ProcessPoolExecutor, 1 web process"
CALM, FLOODED = "tornado-run --workers 2, no flood", "tornado-run --workers 2, 2000 idle"
SHARED, REUSE = "tornado-run --workers 2 --no-reuse-port", "tornado-run --workers 2 --reuse-port"
TIER_OFFLOADED, TIER_BLOCKING = "@unblock(pool='process')", "blocking handler"
ONE_AT_A_TIME, IN_FLIGHT = "trivial call, one at a time", "trivial calls, 64 in flight"


class Results:
    """The sections of one results file, read by section key, row name and figure."""

    def __init__(self, sections: list[Section], machine: dict[str, object]) -> None:
        self.sections = {section.key: section for section in sections}
        self.machine = machine

    def value(self, section: str, row: str, key: str) -> float:
        """A figure; KeyError naming it when the run does not have it (a skipped row)."""
        for candidate in self.sections[section].rows:
            if candidate.name == row and candidate.values.get(key) is not None:
                return float(candidate.values[key])  # type: ignore[arg-type]
        raise KeyError(f"{section} / {row} / {key}")

    def ratio(self, section: str, row: str, base: str, key: str) -> str:
        return f"{self.value(section, row, key) / self.value(section, base, key):.2f}x"

    def num(self, section: str, row: str, key: str, digits: int = 0) -> str:
        return f"{self.value(section, row, key):,.{digits}f}"

    def total(self, section: str, rows: tuple[str, ...], key: str) -> str:
        return f"{sum(self.value(section, row, key) for row in rows):,.0f}"

    def spread(self, section: str, prefix: str, key: str) -> str:
        """The lowest and highest figure of the rows whose name starts with `prefix`."""
        found = [
            float(row.values[key])  # type: ignore[arg-type]
            for row in self.sections[section].rows
            if row.name.startswith(prefix) and row.values.get(key) is not None
        ]
        if not found:
            raise KeyError(f"{section} / {prefix}... / {key}")
        return f"{min(found):.2f}-{max(found):.2f}x"

    def share(self, ms: int, key: str) -> str:
        """The tier's figure `key` for `ms` ms tasks, offloaded over blocking."""
        offloaded, blocking = f"{ms} ms task, {TIER_OFFLOADED}", f"{ms} ms task, {TIER_BLOCKING}"
        return f"{self.value('tier', offloaded, key) / self.value('tier', blocking, key):.2f}"


FIGURES: dict[str, Callable[[Results], str]] = {
    "fast_hello": lambda r: r.ratio("http-hello", FAST, RAW, "req_per_cpu_s"),
    "fast_json": lambda r: r.ratio("http-json", FAST, RAW, "req_per_cpu_s"),
    "fast_post": lambda r: r.ratio("http-echo", FAST, RAW, "req_per_cpu_s"),
    "tornado_hello": lambda r: r.ratio("http-hello", TORNADO, RAW, "req_per_cpu_s"),
    "gunicorn_hello": lambda r: r.ratio("http-hello", GUNICORN, RAW, "req_per_cpu_s"),
    "fast_cpu_s": lambda r: r.num("http-hello", FAST, "req_per_cpu_s"),
    "raw_cpu_s": lambda r: r.num("http-hello", RAW, "req_per_cpu_s"),
    "fast_p50": lambda r: r.num("http-hello", FAST, "p50_ms", 2),
    "raw_p50": lambda r: r.num("http-hello", RAW, "p50_ms", 2),
    "respawn": lambda r: r.num("hello", "tornado-run --workers 2 --loop uvloop", "respawn_ms"),
    "raw_respawn": lambda r: r.num("hello", RAW, "respawn_ms"),
    "tls": lambda r: r.ratio(
        "tls",
        "tornado-run --workers 2 --certfile",
        "raw HTTPServer(ssl_options) + fork_processes(2)",
        "kept_per_cpu_s",
    ),
    "cpu_1": lambda r: r.num("cpu", PROCESS_1, "fraction", 2),
    "cpu_auto": lambda r: r.num("cpu", PROCESS_AUTO, "fraction", 2),
    "cpu_stdlib": lambda r: r.num("cpu", STDLIB, "fraction", 2),
    "fast_p99": lambda r: r.num("cpu", PROCESS_1, "fast_p99_ms"),
    "blocking_p99": lambda r: r.num("cpu", "tornado-run -w auto, blocking handler", "fast_p99_ms"),
    "thread_p99": lambda r: r.num("cpu", "tornado-run -w auto, @unblock thread", "fast_p99_ms"),
    "shed": lambda r: r.num("overload", PROCESS_AUTO, "shed_pct"),
    "accepted_p99": lambda r: f"{r.value('overload', PROCESS_AUTO, 'accepted_p99_ms') / 1000:.2f}",
    "stdlib_shed": lambda r: r.num("overload", STDLIB, "shed_pct"),
    "unanswered": lambda r: r.num("overload", STDLIB, "unanswered_pct"),
    "reload_failed": lambda r: r.total("reload", (SHARED, REUSE), "failed"),
    "gunicorn_failed": lambda r: r.num("reload", GUNICORN, "failed"),
    "gunicorn_failed_pct": lambda r: r.num("reload", GUNICORN, "failed_pct", 1),
    "ws_abnormal": lambda r: r.total("websockets", (SHARED, REUSE), "abnormal"),
    "ws_failed": lambda r: r.total("websockets", (SHARED, REUSE), "failed"),
    "flood_cost": lambda r: (
        f"{100 * (1 - r.value('flood', FLOODED, 'req_s') / r.value('flood', CALM, 'req_s')):.0f}"
    ),
    "flood_lines": lambda r: r.num("flood", FLOODED, "log_lines"),
    "spread_reuse": lambda r: r.num("spread", REUSE, "busiest_pct"),
    "spread_shared": lambda r: r.num("spread", SHARED, "busiest_pct"),
    "transport_one": lambda r: r.num("transport", ONE_AT_A_TIME, "vs_stdlib", 2) + "x",
    "transport_one_us": lambda r: r.num("transport", ONE_AT_A_TIME, "ours"),
    "stdlib_one_us": lambda r: r.num("transport", ONE_AT_A_TIME, "stdlib"),
    "transport_64": lambda r: r.num("transport", IN_FLIGHT, "vs_stdlib", 2) + "x",
    "transport_1mib": lambda r: r.spread("transport", "1 MiB", "vs_stdlib"),
    "transport_16mib": lambda r: r.spread("transport", "16 MiB", "vs_stdlib"),
    "thread_dispatch": lambda r: r.spread("thread-dispatch", "thread:", "ratio"),
    "tier_2": lambda r: r.share(2, "of_server_cpu"),
    "tier_20": lambda r: r.share(20, "of_server_cpu"),
    "tier_cores_2": lambda r: r.share(2, "useful"),
    "tier_p99_2": lambda r: r.num("tier", f"2 ms task, {TIER_OFFLOADED}", "p99_ms"),
    "blocking_p99_2": lambda r: r.num("tier", f"2 ms task, {TIER_BLOCKING}", "p99_ms"),
}

HEADLINE = """\
- **Hello world**: `--http auto` (the default, the fast httptools server) serves **{fast_hello}**
  the requests per server CPU-second of raw `fork_processes` ({fast_json} on JSON, {fast_post}
  on a 4 KiB POST; Tornado's own server in tornado-run: {tornado_hello}; `gunicorn -k tornado`:
  {gunicorn_hello}), and a `kill -9`ed worker serves again in about {respawn} ms (raw
  `fork_processes`: {raw_respawn} ms).
- **HTTPS** with keep-alive: {tls} the requests per CPU-second of a raw Tornado
  `HTTPServer(ssl_options)`.
- **CPU-bound `/slow`** through `@unblock(pool="process")`: {cpu_1} of the physical limit,
  while `/fast` keeps a p99 of about {fast_p99} ms (a blocking handler: {blocking_p99} ms).
- **Overload at 4x**: {shed}% shed at once with 503 + `Retry-After`, the rest answered with a
  p99 of {accepted_p99} s; a hand-rolled stdlib pool leaves {unanswered}% without an answer
  within 10 s.
- **Reload**: 10 HUPs under `wrk -c64`, {reload_failed} failed requests (gunicorn:
  {gunicorn_failed}, {gunicorn_failed_pct}%); with 200 open WebSockets across 3 HUPs,
  {ws_abnormal} cut without a close frame (1006) and {ws_failed} failed HTTP requests.
- **Spread**: the busiest of 2 workers holds {spread_reuse}% of 64 keep-alive connections with
  `--reuse-port` (the default), {spread_shared}% with one shared socket.
- **Process pool transport** (2 processes, against `ProcessPoolExecutor` side by side): a
  trivial call one at a time costs {transport_one} of its round trip, 64 in flight
  {transport_64}, a 1 MiB echo {transport_1mib} and a 16 MiB echo {transport_16mib} (bytes,
  bytearray, memoryview, numpy), through memfds, never a pipe.
- **CPU tier**: of the CPU the server gets, a 20 ms task through `@unblock(pool="process")` is
  {tier_20} as useful as the same work blocking the loop, a 2 ms task {tier_2}, with a p99 of
  {tier_p99_2} ms against {blocking_p99_2} ms.
"""

SUMMARY = """\
- **HTTP layer**: `--http fast` (the default, `--http auto`) serves **{fast_hello}** the
  requests per server CPU-second of raw `fork_processes(2)` on hello world ({fast_cpu_s}
  against {raw_cpu_s}), {fast_json} on a JSON answer and {fast_post} on a 4 KiB POST;
  `--http tornado` serves {tornado_hello} and `gunicorn -k tornado` {gunicorn_hello}. The p50
  latency of hello world is {fast_p50} ms against {raw_p50} ms.
- **Respawn**: a worker killed with `kill -9` is replaced and serving again in about
  {respawn} ms (raw `fork_processes`: {raw_respawn} ms).
- **TLS**: with keep-alive, {tls} the HTTPS requests per server CPU-second of a raw
  `HTTPServer(ssl_options)`.
- **`/slow`** (a 20 ms CPU task) through `@unblock(pool="process")` reaches {cpu_1} of the
  physical limit with one web worker and {cpu_auto} with `--workers auto`, against
  {cpu_stdlib} for a hand-rolled stdlib pool; `/fast` keeps a p99 of {fast_p99} ms meanwhile,
  where a blocking handler gives {blocking_p99} ms and a thread pool {thread_p99} ms.
- **Overload** at 4x capacity: tornado-run sheds {shed}% at once with 503 + `Retry-After`
  and answers the rest with a p99 of {accepted_p99} s; the stdlib pool sheds {stdlib_shed}%,
  and {unanswered}% of its requests get no answer within 10 s.
- **Reload**: 10 HUPs under `wrk -c64`, {reload_failed} failed requests in both socket modes
  (gunicorn: {gunicorn_failed} failed, {gunicorn_failed_pct}%); 200 open WebSockets across 3
  HUPs: {ws_abnormal} abnormal closes (1006), {ws_failed} failed HTTP requests.
- **Flood**: 2,000 idle connections held while `wrk` loads `/` cost tornado-run
  {flood_cost}% of its req/s and {flood_lines} log lines.
- **Spread**: with `--reuse-port` (the default) the busiest of 2 workers holds
  {spread_reuse}% of 64 keep-alive connections; with one shared socket {spread_shared}%.
- **Transport**: a trivial call to a process pool takes {transport_one_us} µs one at a time
  against {stdlib_one_us} µs for `ProcessPoolExecutor` ({transport_one}); 64 in flight
  {transport_64}; echoes of 1 MiB {transport_1mib} and of 16 MiB {transport_16mib}. The thread
  pool's dispatch costs {thread_dispatch} of `run_in_executor`'s.
- **CPU tier**: per CPU-second the server spends, a 2 ms task through the tier does {tier_2}
  of the useful work a blocking handler does ({tier_20} at 20 ms); in shares of the cores
  {tier_cores_2}; its p99 is {tier_p99_2} ms against the blocking handler's {blocking_p99_2} ms.
"""


def load(path: Path = PUBLISHED) -> Results:
    sections, machine = report.read_results(path)
    return Results(sections, machine)


def regions(results: Results) -> dict[str, str]:
    """The generated text of each region, by name."""
    figures = {name: figure(results) for name, figure in FIGURES.items()}
    machine = results.machine
    run = (
        f"Full run (`python examples/bench/run.py`: 3 interleaved rounds of 8 s rows, medians) "
        f"on {machine['cpu']}, {machine['usable_cores']} usable cores, {machine['memory_gib']} "
        f"GiB, {machine['os']}, Python {machine['python']}, {machine['date']}."
    )
    tables = "\n".join(report.markdown(section) for section in results.sections.values())
    return {
        "headline": HEADLINE.format(**figures),
        "summary": SUMMARY.format(**figures),
        "run": textwrap.fill(run, 96) + "\n",
        "tables": tables,
    }


REGION = re.compile(r"(<!-- bench:(\w+):start -->\n)(.*?)(<!-- bench:\2:end -->)", re.DOTALL)


def render(text: str, generated: dict[str, str]) -> str:
    """`text` with each region's content replaced by its generated text."""
    return REGION.sub(lambda m: m.group(1) + generated[m.group(2)] + m.group(4), text)


def stale(generated: dict[str, str]) -> list[str]:
    """The files whose generated regions differ from `generated`."""
    return [
        str(path.relative_to(ROOT))
        for path in (README, PAGE)
        if render(path.read_text(), generated) != path.read_text()
    ]


def publish(results_path: Path) -> None:
    """Make `results_path` the published results: copy it, draw the charts, write the pages.

    Every figure is computed before anything is written, so a run that lacks one leaves the
    published files as they were.
    """
    results = load(results_path)
    generated = regions(results)
    if results_path.resolve() != PUBLISHED.resolve():
        shutil.copyfile(results_path, PUBLISHED)
    note = report.write_chart(CHART, list(results.sections.values()))
    if note:
        raise SystemExit(note)
    for path in (README, PAGE):
        path.write_text(render(path.read_text(), generated))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        differ = stale(regions(load()))
        for name in differ:
            print(f"{name}: figures differ from {PUBLISHED.name}; run: {COMMAND}", file=sys.stderr)
        return 1 if differ else 0
    if len(args) != 1:
        print(f"usage: {COMMAND}  |  --check", file=sys.stderr)
        return 2
    publish(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
