"""Decide when a worker must be recycled: after N requests, above a memory limit, or with age.

The master keeps one `Recycler` per worker and calls `check` from its loop with the worker's
request counter; memory is sampled with psutil at most once per `memory_interval`. A verdict is
a one-line reason; the master then starts a replacement before it retires the old worker, so
capacity never dips. Jitter spreads the limits so that workers started together are not all
recycled at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024


@dataclass(frozen=True)
class RecyclePolicy:
    """Limits shared by all workers; 0 or None disables a limit."""

    max_requests: int = 0
    max_requests_jitter: int = 0
    max_memory_mib: float = 0
    memory_samples: int = 3
    memory_interval: float = 1.0
    max_lifetime: float = 0
    max_lifetime_jitter: float = 0

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_requests_jitter", "max_memory_mib"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"--{_flag(name)} must be >= 0, got {value!r}")
        for name in ("max_lifetime", "max_lifetime_jitter"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"--{_flag(name)} must be >= 0 seconds, got {value!r}")
        if self.memory_samples < 1:
            raise ValueError(f"memory samples must be >= 1, got {self.memory_samples!r}")
        if self.memory_interval <= 0:
            raise ValueError(f"memory interval must be > 0 seconds, got {self.memory_interval!r}")

    @property
    def enabled(self) -> bool:
        """True when any limit is set, so the master has something to check."""
        return bool(self.max_requests or self.max_memory_mib or self.max_lifetime)


def _flag(name: str) -> str:
    return name.replace("_mib", "").replace("_", "-")


class Recycler:
    """One worker's limits (jitter drawn once, at the worker's start) and memory history."""

    def __init__(
        self,
        policy: RecyclePolicy,
        pid: int,
        started: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()
        self.policy = policy
        self.pid = pid
        self.started = time.monotonic() if started is None else started
        self.request_limit = 0
        if policy.max_requests:
            self.request_limit = policy.max_requests + rng.randint(0, policy.max_requests_jitter)
        self.deadline: float | None = None
        if policy.max_lifetime:
            jitter = rng.uniform(0, policy.max_lifetime_jitter)
            self.deadline = self.started + policy.max_lifetime + jitter
        self.over_memory = 0
        self.last_rss = 0
        self._next_sample = self.started
        self._process: psutil.Process | None = None

    def check(self, requests: int, now: float | None = None) -> str | None:
        """Return why the worker must be recycled now, or None.

        `requests` is the worker's count of requests served since it started.
        """
        now = time.monotonic() if now is None else now
        if self.request_limit and requests >= self.request_limit:
            return f"max-requests: served {requests} requests (limit {self.request_limit})"
        if self.deadline is not None and now >= self.deadline:
            age, limit = now - self.started, self.deadline - self.started
            return f"max-lifetime: running for {age:.0f} s (limit {limit:.0f} s)"
        if self.policy.max_memory_mib and now >= self._next_sample:
            self._next_sample = now + self.policy.memory_interval
            rss = self._sample_rss()
            if rss is not None:
                return self.observe_rss(rss)
        return None

    def observe_rss(self, rss: int) -> str | None:
        """Record one memory sample; a reason once `memory_samples` in a row are over."""
        self.last_rss = rss
        limit = self.policy.max_memory_mib * MIB
        if not limit or rss <= limit:
            self.over_memory = 0
            return None
        self.over_memory += 1
        if self.over_memory < self.policy.memory_samples:
            return None
        return (
            f"max-memory: RSS {rss / MIB:.0f} MiB over the {self.policy.max_memory_mib:g} MiB "
            f"limit in {self.over_memory} consecutive samples"
        )

    def _sample_rss(self) -> int | None:
        try:
            if self._process is None:
                self._process = psutil.Process(self.pid)
            return int(self._process.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
