"""`tornado-run status`: print one row per worker of a running master.

The master is found through `--control PATH`, or `--pid FILE` (its control socket is
`FILE.ctl`), or, with neither, the only master of this user in the default control folder.
Exit codes: 0 printed, 1 no master answered, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import control_socket as control
from .snapshot import Snapshot, WorkerSnapshot

COLUMNS = (
    "ID",
    "PID",
    "AGE",
    "REQUESTS",
    "IN FLIGHT",
    "CONNS",
    "CAP HITS",
    "WEBSOCKETS",
    "RSS",
    "CPU %",
    "MAX LAG",
    "POOLS busy/queued",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tornado-run status",
        description="Show each worker of a running tornado-run master.",
        epilog="example: tornado-run status --pid /run/app.pid",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pid", metavar="FILE", help="the master's --pid file")
    where.add_argument("--control", metavar="PATH", help="the master's control socket")
    parser.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    return parser


def main(argv: list[str]) -> int:
    """Run the command with `argv` (without the `status` word); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.timeout <= 0:
        print(f"tornado-run status: --timeout {args.timeout!r}: must be > 0", file=sys.stderr)
        return 2
    path = _find(args.control, args.pid)
    if isinstance(path, int):
        return path
    try:
        snapshot = control.query(path, timeout=args.timeout)
    except (OSError, ValueError) as exc:
        print(f"tornado-run status: no master answered on {str(path)!r}: {exc}", file=sys.stderr)
        return 1
    print(snapshot.to_json() if args.json else format_table(snapshot))
    return 0


def _find(explicit: str | None, pid_file: str | None) -> Path | int:
    """The control socket path, or an exit code after printing why there is none."""
    if explicit or pid_file:
        return control.control_path(explicit, pid_file, 0)
    found = control.running_masters()
    if len(found) == 1:
        return found[0]
    if not found:
        print(
            "tornado-run status: no running master found in "
            f"{str(control.default_dir())!r}; pass --pid FILE or --control PATH",
            file=sys.stderr,
        )
        return 1
    names = ", ".join(str(p) for p in found)
    print(
        f"tornado-run status: several masters run ({names}); pass --control PATH", file=sys.stderr
    )
    return 2


def format_table(snapshot: Snapshot) -> str:
    """The snapshot as a header line and an aligned table, one row per worker."""
    rows = [COLUMNS] + [_row(w) for w in sorted(snapshot.workers, key=lambda w: w.worker_id)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        f"master pid {snapshot.master_pid}, up {format_age(snapshot.uptime)}, "
        f"{len(snapshot.workers)} workers, {sum(snapshot.restarts.values())} restarts"
    ]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if snapshot.tier:
        lines.append(format_tier(snapshot.tier))
    return "\n".join(line.rstrip() for line in lines)


def format_tier(tier: dict[str, Any]) -> str:
    """One line for the CPU tier: its broker and, per pool, busy/queued of its size."""
    pools = ", ".join(
        f"{name} {stats.get('busy', 0)}/{stats.get('queued', 0)} of {stats.get('size', 0)}"
        for name, stats in sorted(tier.get("pools", {}).items())
    )
    return (
        f"cpu tier pid {tier.get('pid')}, generation {tier.get('generation', 0)}, "
        f"{tier.get('restarts', 0)} restarts; pools busy/queued: {pools or '-'}"
    )


def _row(w: WorkerSnapshot) -> tuple[str, ...]:
    pools = ", ".join(
        f"{name} {stats.get('busy', 0)}/{stats.get('queued', 0)}"
        for name, stats in sorted(w.pools.items())
    )
    state = "" if w.state == "ready" else f" ({w.state})"
    return (
        f"{w.worker_id}{state}",
        str(w.pid),
        format_age(w.age),
        str(w.requests),
        str(w.in_flight),
        str(w.connections),
        str(w.cap_hits),
        str(w.websockets),
        f"{w.rss / 1048576:.1f}M",
        f"{w.cpu_percent:.1f}",
        f"{w.max_lag_ms:.0f}ms",
        pools or "-",
    )


def format_age(seconds: float) -> str:
    """Seconds as a short age: 42s, 5m07s, 3h12m, 2d04h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
