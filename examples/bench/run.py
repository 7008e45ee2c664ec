"""Benchmark tornado-run against its peers on this machine, in one interleaved run.

    python examples/bench/run.py                 # full run (several minutes; a quiet machine)
    python examples/bench/run.py --quick         # a few seconds per row: a smoke test
    python examples/bench/run.py --only hello,cpu

Sections: hello (tornado-run vs raw fork_processes vs gunicorn -k tornado), http (--http
fast vs --http tornado on hello, JSON and a 4 KiB POST), async (the seed's async-tasks table),
forward (blocking vs async HTTP client in a proxy), cpu (/slow as a fraction of the physical
limit, /fast p99, and overload at 4x), dispatch (examples/bench/dispatch.py), transport (the
process pools' round trip and 1/16 MiB echoes against ProcessPoolExecutor and pebble, and thread
dispatch against run_in_executor: examples/bench/transport.py), reload (failed
requests across HUPs), spread (connections per worker, shared socket vs --reuse-port), flood
(wrk while idle connections pile up, also at a 1024 open-files limit), tls (HTTPS keep-alive
requests and new handshakes per server CPU-second, against raw Tornado with ssl_options) and
websockets (open WebSockets plus HTTP load across HUPs: abnormal closes, failed requests, time
until the old workers are gone). Prints markdown tables and writes results.json, results.md
and chart.png into examples/bench/results/. Needs `wrk` (or `ab`): apt-get install wrk. A row
that cannot run here is skipped with a one-line reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "examples.bench"

from examples.bench import report
from examples.bench.harness import REPO_ROOT, Skip
from examples.bench.plan import Section, Settings
from examples.bench.sections_flood import flood_section
from examples.bench.sections_http import http_sections
from examples.bench.sections_offload import (
    async_section,
    cpu_sections,
    dispatch_section,
    forward_section,
)
from examples.bench.sections_tier import tier_section
from examples.bench.sections_tls import tls_section
from examples.bench.sections_transport import transport_sections
from examples.bench.sections_web import hello_section, reload_section, spread_section
from examples.bench.sections_websockets import websockets_section

Log = Callable[[str], None]
RESULTS = REPO_ROOT / "examples" / "bench" / "results"

SECTIONS: dict[str, Callable[[Settings, Log], list[Section]]] = {
    "hello": lambda s, log: [hello_section(s, log)],
    "http": http_sections,
    "async": lambda s, log: [async_section(s, log)],
    "forward": lambda s, log: [forward_section(s, log)],
    "cpu": cpu_sections,
    "tier": lambda s, log: [tier_section(s, log)],
    "dispatch": lambda s, log: [dispatch_section(s, log)],
    "transport": transport_sections,
    "reload": lambda s, log: [reload_section(s, log)],
    "spread": lambda s, log: [spread_section(s, log)],
    "flood": lambda s, log: [flood_section(s, log)],
    "websockets": lambda s, log: [websockets_section(s, log)],
    "tls": lambda s, log: [tls_section(s, log)],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="examples/bench/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per row (smoke test)")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        metavar="SECTION[,SECTION]",
        help="sections to run, comma-separated: " + ", ".join(SECTIONS) + " (default: all)",
    )
    parser.add_argument("--seconds", type=float, help="length of one row (quick 2, full 8)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (quick 1, full 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        parser.error(f"--only {args.only!r}: unknown section; use any of: {', '.join(SECTIONS)}")
    args.only = chosen
    if args.seconds is not None and not 1 <= args.seconds <= 600:
        parser.error(f"--seconds {args.seconds:g}: use a number from 1 to 600")
    if args.rounds is not None and not 1 <= args.rounds <= 20:
        parser.error(f"--rounds {args.rounds}: use a whole number from 1 to 20")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.for_mode(args.quick, args.seconds, args.rounds)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create results folder {args.out}: {err.strerror}", file=sys.stderr)
        return 2
    started = time.monotonic()
    machine = report.machine()
    print(f"## tornado-run benchmark ({'quick' if args.quick else 'full'} run)\n")
    print(
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores, "
        f"{machine['memory_gib']} GiB, {machine['os']}, Python {machine['python']}, "
        f"{machine['date']}\n",
        flush=True,
    )
    sections: list[Section] = []
    for name in args.only:
        log(f"section {name} ({time.monotonic() - started:.0f} s so far)")
        try:
            produced = SECTIONS[name](settings, log)
        except Skip as skip:
            produced = [Section(name, name, [], notes=[f"skipped: {skip}"])]
        for section in produced:
            print(report.markdown(section), flush=True)
        sections += produced
    report.write_json(args.out / "results.json", sections, vars(settings))
    (args.out / "results.md").write_text("\n".join(report.markdown(s) for s in sections))
    note = report.write_chart(args.out / "chart.png", sections)
    print(
        note
        or f"Results: {args.out}/results.json, results.md, chart.png "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
