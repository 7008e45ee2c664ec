"""What the master knows about its workers at one moment, for `tornado-run status` and /metrics.

The master fills a `Snapshot` from its own bookkeeping (ids, pids, request counters from the
worker channel, the stats each worker publishes through `lifecycle.collect_stats()`) and from
psutil (RSS, CPU %). The control socket sends it as JSON; /metrics renders it as Prometheus text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil


@dataclass
class WorkerSnapshot:
    """One worker's figures; `pools` maps a pool name to its counters (busy, queued, ...)."""

    worker_id: int
    pid: int
    age: float
    state: str = "ready"
    requests: int = 0
    in_flight: int = 0
    connections: int = 0
    cap_hits: int = 0
    accept_refused: int = 0
    websockets: int = 0
    rss: int = 0
    cpu_percent: float = 0.0
    max_lag_ms: float = 0.0
    blocked_episodes: int = 0
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Snapshot:
    """The master and its workers; `restarts` counts worker replacements by reason; `tier`
    is the CPU tier (its broker's pid, generation, restarts and per-pool counters), empty
    when there is none."""

    master_pid: int
    uptime: float
    workers: list[WorkerSnapshot] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    version: str = ""
    tier: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Encode for the control socket."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        """Decode what `to_json` produced; raises ValueError on anything else."""
        try:
            data = json.loads(text)
            workers = [WorkerSnapshot(**w) for w in data.pop("workers")]
            return cls(workers=workers, **data)
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a tornado-run status document: {exc}") from None


def worker_figures(stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Pick the snapshot fields out of a worker's `lifecycle.collect_stats()` result.

    Reads the "loop" provider (the watchdog's lag figures) and the "pools" provider; both
    may be missing.
    """
    loop = stats.get("loop", {})
    pools = stats.get("pools", {})
    return {
        "max_lag_ms": float(loop.get("max_lag_ms", 0.0)),
        "blocked_episodes": int(loop.get("blocked_episodes", 0)),
        "pools": {str(k): dict(v) for k, v in pools.items() if isinstance(v, dict)},
    }


class ProcessSampler:
    """RSS and CPU % of worker pids; keeps one psutil.Process per pid so CPU % is the usage
    since the previous sample (the first sample of a pid reads 0.0)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pid: int) -> tuple[int, float]:
        """Return (RSS bytes, CPU %) of `pid`, or (0, 0.0) if it is gone."""
        try:
            proc = self._procs.get(pid)
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
            with proc.oneshot():
                return int(proc.memory_info().rss), float(proc.cpu_percent(None))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return 0, 0.0

    def forget_except(self, live: set[int]) -> None:
        """Drop cached processes whose pid is not in `live`."""
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]
