"""Measure connection spread and failed requests, shared socket vs --reuse-port.

    .venv/bin/python tests/supervision_measure.py [--trials 5]
    .venv/bin/python tests/supervision_measure.py --what wrk-hups    # needs Debian's wrk
    .venv/bin/python tests/supervision_measure.py --what watchdog    # --block-warn cost

For each mode, 2 workers of tests/apps_supervision/prodapp.py on 127.0.0.1:
- spread: 64 keep-alive connections opened at once, one request each; share of the busiest
  worker (goal <= 60%), over several trials;
- after kill -9: the same, once the replacement is ready;
- persistent: 64 connections held open and reconnecting on error, one worker killed; where
  the 64 live connections are 1 s later;
- failed requests of a bounded fresh-connection load across one kill -9 and across 3 HUPs.
Not a test: prints a table for the README.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner_support import Server, start_server, wait_until
from supervision_support import PROD_APPS, Load, connection_spread


def busiest(spread: Counter[int]) -> float:
    return max(spread.values()) / sum(spread.values())


def spreads(port: int, trials: int) -> list[float]:
    return [busiest(connection_spread(port)) for _ in range(trials)]


def kill_one(server: Server) -> None:
    before = server.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids() - {victim}) == 2, 20, "a replacement")
    server.wait_for_log(r"worker \d+ \(pid \d+\) ready", count=3)


def persistent_after_kill(server: Server) -> Counter[int]:
    assert server.port is not None
    conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(64)]
    for conn in conns:
        conn.request("GET", "/pid")
        conn.getresponse().read()
    os.kill(min(server.worker_pids()), signal.SIGKILL)
    placed: Counter[int] = Counter()
    for conn in conns:  # each client notices a dead connection and reconnects at once
        for _ in range(3):
            try:
                conn.request("GET", "/pid")
                conn.getresponse().read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
    time.sleep(1.0)
    for conn in conns:
        try:
            conn.request("GET", "/pid")
            placed[json.loads(conn.getresponse().read())["pid"]] += 1
        except (OSError, http.client.HTTPException):
            placed[0] += 1
        conn.close()
    return placed


def failures_during(server: Server, action: str) -> tuple[int, int]:
    assert server.port is not None
    with Load(server.port, fresh=4) as load:
        load.wait_for(200)
        if action == "kill":
            os.kill(min(server.worker_pids()), signal.SIGKILL)
            time.sleep(1.0)
        else:
            for round_number in range(1, 4):
                server.send_signal(signal.SIGHUP)
                server.wait_for_log(r"Reload complete", timeout=60, count=round_number)
        load.wait_for(200)
    return len(load.failures), load.ok


def measure(mode: str, trials: int) -> dict[str, str]:
    args = ["--workers", "2", "--reuse-port" if mode == "reuse-port" else "--no-reuse-port"]
    row: dict[str, str] = {"mode": mode}
    with start_server("prodapp:application", *args, app_dir=PROD_APPS) as server:
        assert server.port is not None
        fresh = spreads(server.port, trials)
        row["busiest share (mean/max)"] = f"{statistics.mean(fresh):.0%} / {max(fresh):.0%}"
        kill_one(server)
        after = spreads(server.port, trials)
        row["after kill -9 (mean/max)"] = f"{statistics.mean(after):.0%} / {max(after):.0%}"
        placed = persistent_after_kill(server)
        row["held conns after kill"] = "/".join(str(n) for _, n in placed.most_common())
    with start_server("prodapp:application", *args, app_dir=PROD_APPS) as server:
        failed, ok = failures_during(server, "kill")
        row["failed / ok, kill -9"] = f"{failed} / {ok}"
        failed, ok = failures_during(server, "hup")
        row["failed / ok, 3 HUPs"] = f"{failed} / {ok}"
    return row


def wrk_hups(mode: str, hups: int = 10) -> str:
    """wrk -t2 -c64 for 20 s while the master gets `hups` HUPs: requests, errors, non-2xx."""
    flag = "--reuse-port" if mode == "reuse-port" else "--no-reuse-port"
    with start_server("prodapp:application", "--workers", "2", flag, app_dir=PROD_APPS) as server:
        url = f"http://127.0.0.1:{server.port}/pid"
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c64", "-d20s", url], stdout=subprocess.PIPE, text=True
        )
        time.sleep(2)
        for round_number in range(1, hups + 1):
            server.send_signal(signal.SIGHUP)
            server.wait_for_log(r"Reload complete", timeout=60, count=round_number)
            time.sleep(0.3)
        out, _ = wrk.communicate(timeout=60)
    errors = re.search(r"Socket errors:.*", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = re.search(r"(\d+) requests in", out)
    return (
        f"{mode}: {requests.group(1) if requests else '?'} requests, "
        f"{errors.group(0) if errors else 'no socket errors'}, "
        f"non-2xx {non2xx.group(1) if non2xx else 0}"
    )


def watchdog_cost(rounds: int = 4) -> str:
    """Requests per worker CPU-second with and without --block-warn 100 (interleaved)."""
    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for name, extra in (("off", []), ("on", ["--block-warn", "100"])):
            with start_server("prodapp:application", "--workers", "2", *extra,
                              app_dir=PROD_APPS) as server:  # fmt: skip
                url = f"http://127.0.0.1:{server.port}/pid"
                subprocess.run(["wrk", "-t2", "-c64", "-d1s", url], capture_output=True)
                before = _worker_cpu(server)
                out = subprocess.run(
                    ["wrk", "-t2", "-c64", "-d4s", url], capture_output=True, text=True
                ).stdout
                spent = _worker_cpu(server) - before
                match = re.search(r"(\d+) requests in", out)
                assert match is not None, out
                results[name].append(int(match.group(1)) / spent)
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    return f"req per worker CPU-second: off {off:.0f}, on {on:.0f}, cost {1 - on / off:.1%}"


def _worker_cpu(server: Server) -> float:
    return sum(sum(proc.cpu_times()[:2]) for proc in server.workers())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--what", choices=["spread", "wrk-hups", "watchdog"], default="spread")
    args = parser.parse_args()
    if args.what == "wrk-hups":
        print(wrk_hups("shared"))
        print(wrk_hups("reuse-port"))
        return 0
    if args.what == "watchdog":
        print(watchdog_cost())
        return 0
    rows = [measure(mode, args.trials) for mode in ("shared", "reuse-port")]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(row[k] for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
