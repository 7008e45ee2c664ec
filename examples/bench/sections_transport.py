"""The transport section: examples/bench/transport.py (a trivial call one at a time and 64 in
flight, 1 MiB and 16 MiB echoes of bytes-like values and numpy arrays; ProcessPoolExecutor,
pebble and @unblock side by side) and its thread-dispatch rows, as two tables."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .harness import REPO_ROOT
from .plan import Column, Log, Row, Section, Settings

SCRIPT = REPO_ROOT / "examples" / "bench" / "transport.py"
PEERS = {"ProcessPoolExecutor": "stdlib", "pebble": "pebble", "tornado-run": "ours"}


def _run(settings: Settings, log: Log) -> tuple[list[dict[str, Any]], str]:
    """The script's rows, or an empty list and the reason."""
    command = [sys.executable, str(SCRIPT), "--json", "--rounds", str(max(3, settings.rounds))]
    if settings.quick:
        command[-1] = "1"
        command.append("--quick")
    log(f"  {' '.join(command[1:])}")
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=120 if settings.quick else 1200,
        )
    except subprocess.TimeoutExpired:
        return [], "transport.py did not finish in time"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"transport.py exited with {done.returncode}: {last}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def transport_sections(settings: Settings, log: Log) -> list[Section]:
    """The process transport against its peers, and thread dispatch against run_in_executor."""
    rows, reason = _run(settings, log)
    process = Section(
        "transport",
        "Process pool transport, 2 processes: µs per call (median of interleaved rounds)",
        [
            Column("stdlib", "ProcessPoolExecutor µs"),
            Column("pebble", "pebble µs"),
            Column("ours", "@unblock µs"),
            Column("vs_stdlib", "vs stdlib", 2),
            Column("vs_pebble", "vs pebble", 2),
        ],
        notes=[
            "echo: the argument comes back as the result; ProcessPoolExecutor and pebble cannot "
            "pickle a memoryview, so their rows send bytes and wrap the result again",
            "targets: one at a time and 64 in flight <= 0.3x, 16 MiB echo <= 0.2x "
            "of ProcessPoolExecutor",
        ],
    )
    threads = Section(
        "thread-dispatch",
        "Thread pool dispatch: µs per call, @unblock against loop.run_in_executor",
        [
            Column("executor", "run_in_executor µs", 1),
            Column("unblock", "@unblock µs", 1),
            Column("ratio", "ratio", 2),
        ],
    )
    if reason:
        process.notes.append(f"skipped: {reason}")
        threads.notes.append(f"skipped: {reason}")
    for row in rows:
        if "tornado-run" in row:
            values = {short: row[peer] for peer, short in PEERS.items()}
            values["vs_stdlib"] = row["tornado-run"] / row["ProcessPoolExecutor"]
            values["vs_pebble"] = row["tornado-run"] / row["pebble"]
            process.rows.append(Row(row["case"], values))
        else:
            base, ours = row["loop.run_in_executor"], row["@unblock (thread)"]
            threads.rows.append(
                Row(row["case"], {"executor": base, "unblock": ours, "ratio": ours / base})
            )
    return [process, threads]
